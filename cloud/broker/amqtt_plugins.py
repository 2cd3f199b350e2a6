"""amqtt plugins that give the embedded broker production's rules: who may connect, and where to.

amqtt loads plugins by dotted path and builds each one's ``Config`` dataclass from the broker
configuration, so the only thing passed in is the path of the credential store.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from cloud.broker.acl import SHARE_PREFIX, Grants, device_client_id, device_grants, service_grants
from cloud.broker.credentials import Account, CredentialStore

log = logging.getLogger(__name__)

ACCOUNT_KEY = "voxfleet.account"  # Session.attributes key holding the authenticated Account


@lru_cache(maxsize=4096)
def _grants(device_id: str | None) -> Grants:
    return device_grants(device_id) if device_id else service_grants()


def session_account(session: Session | None) -> Account | None:
    return session.attributes.get(ACCOUNT_KEY) if session is not None else None


class CredentialAuthPlugin(BaseAuthPlugin):
    """Username and password against the store; no anonymous access, no Will outside one's grants,
    and a device only under its own client id (cloud.broker.acl.device_client_id), as dynsec binds it.

    amqtt publishes a Last Will without any topic check, so the Will topic is checked here, at
    CONNECT, as Mosquitto does: a device cannot leave a Will on another device's presence topic.
    """

    @dataclass
    class Config:
        db_path: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        if not self.config.db_path:
            raise ValueError("CredentialAuthPlugin needs db_path")
        self.store = CredentialStore(Path(self.config.db_path))

    async def authenticate(self, *, session: Session) -> bool:
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(None, self.store.verify, session.username, session.password)
        if account is None:
            log.info("broker: refused client %r (user %r): bad or missing credentials",
                     session.client_id, session.username)
            return False
        if account.device_id and session.client_id != device_client_id(account.device_id):
            log.info("broker: refused client %r (user %r): a device connects as %r only",
                     session.client_id, session.username, device_client_id(account.device_id))
            return False
        if session.will_flag and not _grants(account.device_id).may_publish(session.will_topic or ""):
            log.info("broker: refused client %r (user %r): Last Will on %r is outside its topics",
                     session.client_id, session.username, session.will_topic)
            return False
        session.attributes[ACCOUNT_KEY] = account
        return True


class ConfinementTopicPlugin(BaseTopicPlugin):
    """Every publish, subscribe and delivery checked against the account's grants (cloud.broker.acl).

    Shared subscriptions are refused outright: amqtt would take ``$share/...`` as a literal filter
    that never matches, and a silent ingest worker is worse than a refused one.
    """

    @dataclass
    class Config:
        db_path: str = ""

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        account = session_account(session)
        if account is None or not topic:
            return False
        grants = _grants(account.device_id)
        if action == Action.PUBLISH:
            allowed = grants.may_publish(topic)
        elif action == Action.SUBSCRIBE:
            allowed = not topic.startswith(SHARE_PREFIX) and grants.may_subscribe(topic)
        elif action == Action.RECEIVE:
            allowed = grants.may_receive(topic)
        else:
            allowed = False
        if not allowed and action != Action.RECEIVE:
            log.info("broker: denied %s on %r to user %r", action, topic, account.username)
        return allowed
