"""API keys of the caller's tenant: list, create, revoke, rotate. A key is shown once, when made
(cloud/domain/api_keys.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from cloud.api.common import Input, Output, caller, endpoint, owned, parse_body, scope
from cloud.db import ApiKey
from cloud.domain import api_keys
from cloud.domain.api_keys import MAX_OVERLAP_S, NewKey


class KeyCreate(Input):
    name: str = Field(default="", max_length=200)
    scope: Literal["read", "write"]


class KeyRotate(Input):
    overlap_seconds: int = Field(default=24 * 3600, ge=0, le=MAX_OVERLAP_S)


class KeyOut(Output):
    id: uuid.UUID
    name: str
    prefix: str
    scope: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


class KeyList(Output):
    items: list[KeyOut]


class NewKeyOut(KeyOut):
    key: str = Field(description="the key itself: shown this once, never again")


def _new_key(made: NewKey) -> dict:
    return {**KeyOut.dump(made.row), "key": made.key}


@endpoint("GET", "/api-keys", summary="List the tenant's API keys (never the keys themselves)",
          tag="api keys", response=KeyList)
def list_api_keys():
    rows = scope().all(ApiKey, order_by=[ApiKey.created_at.desc(), ApiKey.id.desc()])
    return {"items": [KeyOut.dump(r) for r in rows]}


@endpoint("POST", "/api-keys", summary="Create an API key; the response holds the key, shown once",
          tag="api keys", body=KeyCreate, response=NewKeyOut, status=201)
def create_api_key():
    body = parse_body(KeyCreate)
    return _new_key(api_keys.create_api_key(caller(), body.name, body.scope)), 201


@endpoint("DELETE", "/api-keys/<uuid:key_id>", summary="Revoke an API key at once", tag="api keys",
          response=KeyOut, errors=(404,))
def revoke_api_key(key_id: uuid.UUID):
    return KeyOut.dump(api_keys.revoke_api_key(caller(), owned(ApiKey, key_id, "api_key")))


@endpoint("POST", "/api-keys/<uuid:key_id>/rotate",
          summary="Make a new key with the same name and scope; the old one works for overlap_seconds more",
          tag="api keys", body=KeyRotate, response=NewKeyOut, status=201, errors=(404, 409))
def rotate_api_key(key_id: uuid.UUID):
    body = parse_body(KeyRotate)
    old = owned(ApiKey, key_id, "api_key")
    return _new_key(api_keys.rotate_api_key(caller(), old, body.overlap_seconds)), 201
