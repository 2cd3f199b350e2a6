"""Pairing endpoints. Devices call ``codes`` and ``collect`` without a key (they have none yet; the
secret they hold is their proof); a tenant calls ``claim`` with a write key. See cloud/pairing.py.

Everything here is limited per client address by cloud.api.auth; failed claims are limited per
tenant too, so a leaked key cannot be used to walk the code space.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import current_app, jsonify
from pydantic import Field

from cloud import pairing
from cloud.api.common import Input, Output, audit, endpoint, parse_body, scope
from cloud.billing import enforce
from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin, device_broker_url
from cloud.db import Device
from cloud.db.session import get_db
from cloud.errors import ApiError
from cloud.ratelimit import Limit, RateLimiter, retry_after_header
from cloud.scoping import TenantScope

POLL_INTERVAL_S = 3
# Failed claims per tenant: 10 at once, then 10 a minute. The code space is 31^6 (~887 million) and a
# code lives 10 minutes, so guessing one at this rate is hopeless.
CLAIM_FAILURES = Limit(burst=10, per_minute=10)
_claim_failures = RateLimiter()


class CodeRequest(Input):
    secret: str = Field(min_length=pairing.MIN_SECRET_LENGTH, max_length=256)


class CodeIssued(Output):
    code: str
    device_key: str
    expires_at: datetime
    poll_interval_s: int = POLL_INTERVAL_S


class CollectRequest(Input):
    code: str = Field(min_length=4, max_length=16)
    secret: str = Field(min_length=1, max_length=256)


class Collected(Output):
    status: str
    device_key: str | None = None
    broker_url: str | None = None
    username: str | None = None
    password: str | None = None
    tenant: str | None = None
    project: str | None = None
    device_name: str | None = None


class ClaimRequest(Input):
    code: str = Field(min_length=4, max_length=16)
    project_id: uuid.UUID
    name: str | None = Field(default=None, min_length=1, max_length=200)


class Claimed(Output):
    id: uuid.UUID
    device_key: str
    name: str
    project_id: uuid.UUID
    status: str


def _api_error(exc: pairing.PairingError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@endpoint("POST", "/pairing/codes", summary="A device asks for a pairing code", tag="pairing",
          body=CodeRequest, response=CodeIssued, status=201, public=True, errors=(400, 429))
def request_pairing_code():
    body = parse_body(CodeRequest)
    try:
        issued = pairing.request_code(get_db(), body.secret)
    except pairing.PairingError as exc:
        raise _api_error(exc) from None
    return jsonify(CodeIssued(code=issued.code, device_key=issued.device_key,
                              expires_at=issued.expires_at).model_dump(mode="json")), 201


@endpoint("POST", "/pairing/collect", summary="A device polls for its credentials", tag="pairing",
          body=CollectRequest, response=Collected, public=True, errors=(403, 404, 410, 429, 503))
def collect_pairing():
    body = parse_body(CollectRequest)
    config = current_app.extensions["voxfleet.config"]
    broker = current_app.extensions.get("voxfleet.broker")
    admin = None
    try:
        admin = broker_admin(config, broker)
        found = pairing.collect(get_db(), body.code, body.secret, admin, device_broker_url(config))
    except pairing.PairingError as exc:
        raise _api_error(exc) from None
    except BrokerAdminError as exc:
        get_db().rollback()
        raise ApiError(503, "broker_unavailable", f"the broker could not be provisioned: {exc}") from None
    finally:
        if admin is not None:
            admin.close()
    if found is None:
        return jsonify(Collected(status="pending").model_dump(mode="json", exclude_none=True)), 202
    response = jsonify(Collected(status="paired", device_key=found.device_key, broker_url=found.broker_url,
                                 username=found.username, password=found.password, tenant=found.tenant,
                                 project=found.project, device_name=found.device_name)
                       .model_dump(mode="json"))
    response.headers["Cache-Control"] = "no-store"
    return response


@endpoint("POST", "/pairing/claim", summary="Claim the device showing a pairing code", tag="pairing",
          body=ClaimRequest, response=Claimed, status=201, errors=(400, 401, 402, 403, 404, 409, 410, 429))
def claim_pairing_code():
    body = parse_body(ClaimRequest)
    device = claim(scope(), body.code, body.project_id, body.name)
    return jsonify(Claimed.model_validate(device).model_dump(mode="json")), 201


def claim(current: TenantScope, code: str, project_id: uuid.UUID, name: str | None,
          claimed_by: uuid.UUID | None = None) -> Device:
    """Claim a code for the tenant, audit it and commit (API and tenant portal). A failed claim counts
    against the tenant's budget of wrong codes (429 once spent); other failures are ApiErrors with the
    pairing error's status and code (404 unknown_code, 410 code_expired, 409 already_claimed, ...)."""
    bucket = f"claim:{current.tenant_id}"
    try:  # the plan's active-devices hard limit: 402 plan_limit_reached, not a wrong code
        enforce.check_new_device(current.db, current.tenant_id)
    except enforce.PlanLimitReached as exc:
        raise ApiError(exc.status, exc.code, str(exc), details=exc.details) from None
    try:
        device = pairing.claim(current, code, project_id, name, claimed_by)
    except pairing.PairingError as exc:
        wait = _claim_failures.take(bucket, CLAIM_FAILURES)
        if wait > 0:
            raise ApiError(429, "too_many_failed_claims", "too many wrong pairing codes; wait and try again",
                           headers={"Retry-After": retry_after_header(wait)}) from None
        raise _api_error(exc) from None
    audit("device.paired", target=f"device:{device.id}", project_id=str(project_id),
          device_key=device.device_key)
    current.commit()
    return device
