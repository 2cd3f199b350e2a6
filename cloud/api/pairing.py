"""Pairing endpoints. Devices call ``codes`` and ``collect`` without a key (they have none yet; the
secret they hold is their proof); a tenant calls ``claim`` with a write key. See cloud/pairing.py.

Everything here is limited per client address by cloud.api.auth; failed claims are limited per
tenant too, so a leaked key cannot be used to walk the code space.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import jsonify
from pydantic import Field

from cloud import pairing, services
from cloud.api.common import Input, Output, caller, endpoint, parse_body
from cloud.db.session import get_db
from cloud.domain import pairing as domain_pairing

POLL_INTERVAL_S = 3


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


@endpoint("POST", "/pairing/codes", summary="A device asks for a pairing code", tag="pairing",
          body=CodeRequest, response=CodeIssued, status=201, public=True, errors=(400, 429))
def request_pairing_code():
    body = parse_body(CodeRequest)
    issued = pairing.request_code(get_db(), body.secret)
    return jsonify(CodeIssued(code=issued.code, device_key=issued.device_key,
                              expires_at=issued.expires_at).model_dump(mode="json")), 201


@endpoint("POST", "/pairing/collect", summary="A device polls for its credentials", tag="pairing",
          body=CollectRequest, response=Collected, public=True, errors=(403, 404, 410, 429, 503))
def collect_pairing():
    body = parse_body(CollectRequest)
    found = domain_pairing.collect(get_db(), body.code, body.secret, config=services.config(),
                                   broker=services.broker())
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
    device = domain_pairing.claim(caller(), body.code, body.project_id, body.name)
    return jsonify(Claimed.dump(device)), 201
