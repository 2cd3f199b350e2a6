"""The embedded default broker: amqtt in a background thread, with production's confinement.

``voxfleet cloud serve`` with no broker URL runs this so a laptop needs nothing installed, yet a
device gets exactly what Mosquitto would give it: its own credentials, its own topics, revocation
that drops its connection. amqtt implements MQTT 3.1.1 only and has no shared subscriptions, so
embedded deployments run a single ingest worker (docs/design.md).

amqtt 0.12.1 needed these fixes for that to hold, made in ``ConfinedBroker`` below:
- it merges a CONNECT into (or deletes) the existing session of the same client id *before*
  authenticating, so a refused client could wipe or take over another client's session: here a
  CONNECT is authenticated first, and a client id owned by another account is refused; and a
  clean-session CONNECT now closes the old connection of its client id instead of orphaning it;
- on connect it replays retained messages for every subscription filter in the broker, whoever
  owns it, and sends retained messages without the delivery check: here each retained message
  goes only to a client allowed to receive it;
- it has no way to revoke a connected client: ``disconnect_user`` closes the connection (the
  Will is published, as on an unclean drop) and forgets the session.
These override private amqtt methods, which is why amqtt is pinned to the version they were read in.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from cloud.broker.admin import BrokerAdminError
from cloud.broker.amqtt_plugins import ACCOUNT_KEY, session_account
from cloud.broker.credentials import Account, CredentialStore

log = logging.getLogger(__name__)

STORE_FILE = "broker-accounts.sqlite3"
AMQTT_VERSION = "0.12.1"


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start or stop."""


class ConfinedBroker(Broker):
    """amqtt's Broker with authentication before session handling, and revocation (see module doc)."""

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(reader, writer,
                                                                              self.plugins_manager)
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(exc) from exc

        authenticated = await super()._authenticate(incoming, None)  # type: ignore[arg-type]
        incoming.password = None  # checked; no reason to keep it in memory
        if not authenticated:
            await self._refuse(writer, NOT_AUTHORIZED, f"client {incoming.client_id!r} not authorized")
        account: Account = incoming.attributes[ACCOUNT_KEY]

        existing = self._sessions.get(incoming.client_id or "", (None, None))[0]
        owner = session_account(existing) if existing is not None else None
        if existing is not None and (owner is None or owner.username != account.username):
            log.warning("broker: refused %r from user %r: the client id belongs to another account",
                        incoming.client_id, account.username)
            await self._refuse(writer, IDENTIFIER_REJECTED, f"client id {incoming.client_id!r} is taken")

        # From here on, amqtt's own handling of clean and persistent sessions.
        if incoming.clean_session:
            if incoming.client_id:
                # [MQTT-3.1.4-2] the old connection goes; amqtt would leave it running, detached from
                # any session, where a later revocation could not find it.
                await self._drop_connection(incoming.client_id)
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            incoming.parent = 0
            session = incoming
        elif existing is not None:
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain", "keep_alive",
                         "username"):
                setattr(existing, name, getattr(incoming, name))
            existing.attributes[ACCOUNT_KEY] = account
            existing.parent = 1
            session = existing
        else:
            incoming.parent = 0
            session = incoming

        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _drop_connection(self, client_id: str) -> None:
        session, handler = self._sessions.get(client_id, (None, None))
        if session is not None and handler is not None and session.transitions.is_connected():
            await handler.handle_connection_closed()
            await self._stop_handler(handler)

    @staticmethod
    async def _refuse(writer: Any, code: int, reason: str) -> None:
        with contextlib.suppress(OSError, AMQTTError):
            await ConnackPacket.build(0, code).to_stream(writer)
            await writer.close()
        raise MQTTError(reason)

    async def _authenticate(self, session: Session, _: Any) -> bool:
        # Done once, in _initialize_client_session, before any session was touched.
        return session_account(session) is not None

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        topic_filter, qos = subscription
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic=topic, action=Action.RECEIVE):
                continue
            granted = min(qos, retained.qos or qos)
            tasks.append(asyncio.ensure_future(
                handler.mqtt_publish(retained.topic, retained.data, granted, retain=True)))
        if tasks:
            await asyncio.wait(tasks)

    async def disconnect_user(self, username: str) -> int:
        """Drop every connection and session of ``username``; returns how many sessions went."""
        dropped = 0
        for client_id, (session, handler) in list(self._sessions.items()):
            account = session_account(session)
            if account is None or account.username != username:
                continue
            if handler is not None and session.transitions.is_connected():
                await handler.handle_connection_closed()  # ends its message loop, as a dropped link does
                await asyncio.sleep(0)
            await self._cleanup_session(client_id)
            dropped += 1
        return dropped

    def connected_usernames(self) -> set[str]:
        return {account.username for session, _ in self._sessions.values()
                if (account := session_account(session)) is not None}


class EmbeddedBroker:
    """amqtt on its own thread and event loop, so a Flask process can host it beside the web app.

    Accounts live in ``{data_dir}/broker-accounts.sqlite3``. Retained messages and persistent
    sessions are kept in memory only (amqtt), so they do not survive a restart of the broker.
    """

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 1883, *,
                 reconcile_interval: float = 1.0, session_expiry_s: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host, self.port = host, port
        self.store = CredentialStore(self.data_dir / STORE_FILE)
        self.reconcile_interval = reconcile_interval
        self.session_expiry_s = session_expiry_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: ConfinedBroker | None = None
        self._reconciler: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def config(self) -> dict[str, Any]:
        plugin_cfg = {"db_path": str(self.store.path)}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only our plugins: no anonymous plugin, no $SYS, and no packet logger (it would log
            # CONNECT packets, passwords included, at debug level).
            "plugins": {
                "cloud.broker.amqtt_plugins.CredentialAuthPlugin": plugin_cfg,
                "cloud.broker.amqtt_plugins.ConfinementTopicPlugin": plugin_cfg,
            },
            "session_expiry_interval": self.session_expiry_s,
        }

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        # amqtt's state machines log every session transition at INFO through `transitions`.
        if logging.getLogger("transitions").level == logging.NOTSET:
            logging.getLogger("transitions").setLevel(logging.WARNING)
        if self.running:
            raise EmbeddedBrokerError(f"the embedded broker on {self.host}:{self.port} is already running")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"voxfleet-broker-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise EmbeddedBrokerError(f"the embedded broker did not start on {self.host}:{self.port} "
                                      f"within {timeout:.0f}s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        log.info("embedded broker listening on %s:%s", self.host, self.port)
        return self

    async def _start(self) -> None:
        broker = ConfinedBroker(self.config())
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise EmbeddedBrokerError(f"cannot start the embedded broker: port {self.port} on "
                                          f"{self.host} is already in use") from exc
            raise EmbeddedBrokerError(f"cannot start the embedded broker on {self.host}:{self.port}: "
                                      f"{cause or exc}") from exc
        self._broker = broker
        self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def _reconcile_forever(self) -> None:
        """Revocations made by another process on the same store still drop the connection."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.reconcile_interval)
            broker = self._broker
            if broker is None:
                return
            try:
                known = await loop.run_in_executor(None, self.store.usernames)
                for username in broker.connected_usernames() - known:
                    log.info("broker: account %s was revoked; disconnecting it", username)
                    await broker.disconnect_user(username)
            except Exception:  # never let one bad pass end revocation for good
                log.exception("broker: reconciling accounts failed; retrying")

    def _call(self, coro: Any, timeout: float) -> Any:
        if self._loop is None or not self.running:
            coro.close()
            raise EmbeddedBrokerError("the embedded broker is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def disconnect_user(self, username: str, timeout: float = 10.0) -> int:
        """Drop the user's connections and sessions now (thread-safe)."""
        if self._broker is None:
            return 0
        return self._call(self._broker.disconnect_user(username), timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running or self._loop is None:
            return
        self._call(self._stop(), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        log.info("embedded broker on %s:%s stopped", self.host, self.port)

    async def _stop(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    def admin(self) -> EmbeddedBrokerAdmin:
        return EmbeddedBrokerAdmin(self.store, self)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBrokerAdmin:
    """BrokerAdmin for the embedded broker: the store, plus the running broker when in this process.

    Without a broker (another ``voxfleet cloud`` process on the same data dir), a removal is picked
    up by the broker's reconciler within its interval.
    """

    def __init__(self, store: CredentialStore | Path, broker: EmbeddedBroker | None = None) -> None:
        if not isinstance(store, CredentialStore):
            store = CredentialStore(Path(store) / STORE_FILE)
        self.store = store
        self.broker = broker

    def add_device(self, device_id: str, username: str, password: str) -> None:
        self.store.add_device(device_id, username, password)
        log.info("embedded broker: device account %s created for %s", username, device_id)

    def _drop(self, username: str, what: str) -> None:
        """Drop the live connection now when the broker runs here (else its reconciler does it)."""
        if self.broker is not None and self.broker.running:
            try:
                self.broker.disconnect_user(username)
            except (TimeoutError, EmbeddedBrokerError) as exc:
                raise BrokerAdminError(f"account {username!r} {what}, but its connection was not dropped: "
                                       f"{exc}") from exc

    def remove_device(self, username: str) -> bool:
        existed = self.store.remove(username)
        self._drop(username, "revoked")
        if existed:
            log.info("embedded broker: device account %s removed", username)
        return existed

    def disable_device(self, username: str) -> bool:
        existed = self.store.set_disabled(username, True)
        self._drop(username, "disabled")
        return existed

    def enable_device(self, username: str) -> bool:
        return self.store.set_disabled(username, False)

    def ensure_service_account(self, username: str, password: str) -> None:
        self.store.set_service(username, password)
        log.info("embedded broker: service account %s ready", username)

    def close(self) -> None:
        """Nothing held open: the store opens a connection per call."""
