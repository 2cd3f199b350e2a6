"""API keys of the caller's tenant: list, create, revoke, rotate. A key is shown once, when made."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

from flask import g
from pydantic import Field

from cloud import security
from cloud.api.common import Input, Output, audit, endpoint, not_found, parse_body, scope
from cloud.db import ApiKey
from cloud.db.base import utcnow
from cloud.errors import ApiError

MAX_OVERLAP_S = 30 * 24 * 3600


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


def _out(row: ApiKey) -> dict:
    return KeyOut.model_validate(row).model_dump(mode="json")


def _new_key(name: str, scope_name: str) -> tuple[ApiKey, str]:
    made = security.new_api_key()
    row = scope().add(ApiKey(name=name, prefix=made.prefix, key_hash=made.key_hash, scope=scope_name,
                             created_by=g.actor))
    return row, made.key


def _live(key_id: uuid.UUID) -> ApiKey:
    row = scope().get(ApiKey, key_id)
    if row is None:
        raise not_found("api_key")
    return row


@endpoint("GET", "/api-keys", summary="List the tenant's API keys (never the keys themselves)",
          tag="api keys", response=KeyList)
def list_api_keys():
    rows = scope().all(ApiKey, order_by=[ApiKey.created_at.desc(), ApiKey.id.desc()])
    return {"items": [_out(r) for r in rows]}


def create(name: str, scope_name: str) -> tuple[ApiKey, str]:
    """Make a key and commit; returns the row and the key itself, which is never stored (API, portal)."""
    row, key = _new_key(name, scope_name)
    scope().flush()
    audit("api_key.create", f"api_key:{row.prefix}", scope=scope_name)
    scope().commit()
    return row, key


def revoke(row: ApiKey) -> ApiKey:
    """Revoke at once and commit; revoking a revoked key changes nothing."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit("api_key.revoke", f"api_key:{row.prefix}")
        scope().commit()
    return row


def rotate(old: ApiKey, overlap_seconds: int) -> tuple[ApiKey, str]:
    """A new key with the old one's name and scope; the old one keeps working ``overlap_seconds`` more.
    ApiError 409 for a revoked or expired key."""
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise ApiError(409, "api_key_inactive", "this key is revoked or expired; create a new one instead")
    ends = now + timedelta(seconds=overlap_seconds)
    # Rotating twice never lengthens the old key's life.
    old.expires_at = min(old.expires_at, ends) if old.expires_at is not None else ends
    row, key = _new_key(old.name, old.scope)
    scope().flush()
    audit("api_key.rotate", f"api_key:{old.prefix}", new=f"api_key:{row.prefix}",
          overlap_seconds=overlap_seconds)
    scope().commit()
    return row, key


@endpoint("POST", "/api-keys", summary="Create an API key; the response holds the key, shown once",
          tag="api keys", body=KeyCreate, response=NewKeyOut, status=201)
def create_api_key():
    body = parse_body(KeyCreate)
    row, key = create(body.name, body.scope)
    return {**_out(row), "key": key}, 201


@endpoint("DELETE", "/api-keys/<uuid:key_id>", summary="Revoke an API key at once", tag="api keys",
          response=KeyOut, errors=(404,))
def revoke_api_key(key_id: uuid.UUID):
    return _out(revoke(_live(key_id)))


@endpoint("POST", "/api-keys/<uuid:key_id>/rotate",
          summary="Make a new key with the same name and scope; the old one works for overlap_seconds more",
          tag="api keys", body=KeyRotate, response=NewKeyOut, status=201, errors=(404, 409))
def rotate_api_key(key_id: uuid.UUID):
    body = parse_body(KeyRotate)
    row, key = rotate(_live(key_id), body.overlap_seconds)
    return {**_out(row), "key": key}, 201
