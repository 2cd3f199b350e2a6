"""Pairing as the tenant and the device take part in it: a tenant claims the code a device shows, the
device collects its broker credentials (the mechanics are cloud/pairing.py).

Failed claims count against the tenant (``CLAIM_FAILURES``), so a leaked key or a signed-in person
cannot walk the code space: the code space is 31^6 (~887 million) and a code lives 10 minutes, so
guessing one at 10 a minute is hopeless.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from cloud import pairing
from cloud.billing import enforce
from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin, device_broker_url
from cloud.config import CloudConfig
from cloud.db import Device
from cloud.domain.caller import Caller
from cloud.domain.errors import DomainError
from cloud.domain.plan_limits import within_plan
from cloud.ratelimit import Limit, RateLimiter, retry_after_header

CLAIM_FAILURES = Limit(burst=10, per_minute=10)
_claim_failures = RateLimiter()


def claim(caller: Caller, code: str, project_id: uuid.UUID, name: str | None = None, *,
          claimed_by: uuid.UUID | None = None) -> Device:
    """Take the device that shows ``code`` into the caller's ``project_id``, audit it and commit.

    Refusals: 402 ``plan_limit_reached`` at the active-devices hard limit (checked first: it is not a
    wrong code, and the code stays usable); the pairing errors (404 ``unknown_project``, 404
    ``unknown_code``, 410 ``code_expired``, 409 ``already_claimed``), each of which counts against the
    tenant's budget of failed claims; 429 ``too_many_failed_claims`` once that is spent.
    ``claimed_by``: the person who typed the code, when one did.
    """
    scope = caller.scope
    within_plan(scope, enforce.check_new_device)
    try:
        device = pairing.claim(scope, code, project_id, name, claimed_by)
    except pairing.PairingError:
        wait = _claim_failures.take(f"claim:{scope.tenant_id}", CLAIM_FAILURES)
        if wait > 0:
            raise DomainError(429, "too_many_failed_claims",
                              "too many wrong pairing codes; wait and try again",
                              headers={"Retry-After": retry_after_header(wait)}) from None
        raise
    caller.audit("device.paired", target=f"device:{device.id}", project_id=str(project_id),
                 device_key=device.device_key)
    scope.commit()
    return device


def collect(db: Session, code: str, secret: str, *, config: CloudConfig,
            broker: Any = None) -> pairing.Credentials | None:
    """The device's poll: None while its code is unclaimed, its credentials once after the claim (the
    broker account is made at that moment). DomainError 503 ``broker_unavailable`` when the broker
    cannot make it now (nothing is kept: the device polls again), or one of the pairing errors."""
    admin = None
    try:
        admin = broker_admin(config, broker)
        return pairing.collect(db, code, secret, admin, device_broker_url(config))
    except BrokerAdminError as exc:
        db.rollback()
        raise DomainError(503, "broker_unavailable", f"the broker could not be provisioned: {exc}") from None
    finally:
        if admin is not None:
            admin.close()
