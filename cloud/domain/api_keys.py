"""A tenant's API keys: create, revoke, rotate with an overlap. The key itself exists only in the
answer to the call that made it: only its hash is stored, and it is never logged or audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cloud import security
from cloud.db import ApiKey
from cloud.db.base import utcnow
from cloud.domain.caller import Caller
from cloud.domain.errors import DomainError

SCOPES = ("read", "write")
MAX_OVERLAP_S = 30 * 24 * 3600


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    key: str   # shown to the caller this once, never again

    def __repr__(self) -> str:  # never print the key
        return f"NewKey(prefix={self.row.prefix!r})"


def _make(caller: Caller, name: str, scope_name: str) -> NewKey:
    if scope_name not in SCOPES:
        raise DomainError(400, "invalid_request", f"scope: one of {', '.join(SCOPES)}")
    made = security.new_api_key()
    row = caller.scope.add(ApiKey(name=name, prefix=made.prefix, key_hash=made.key_hash, scope=scope_name,
                                  created_by=caller.actor))
    caller.scope.flush()
    return NewKey(row, made.key)


def create_api_key(caller: Caller, name: str, scope_name: str) -> NewKey:
    """Make a key (``scope_name`` read or write), audited, and commit."""
    made = _make(caller, name, scope_name)
    caller.audit("api_key.create", f"api_key:{made.row.prefix}", scope=scope_name)
    caller.scope.commit()
    return made


def revoke_api_key(caller: Caller, key: ApiKey) -> ApiKey:
    """Revoke at once and commit; revoking a revoked key changes nothing."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        caller.audit("api_key.revoke", f"api_key:{key.prefix}")
        caller.scope.commit()
    return key


def rotate_api_key(caller: Caller, old: ApiKey, overlap_seconds: int) -> NewKey:
    """A new key with the old one's name and scope; the old one keeps working ``overlap_seconds`` more
    (rotating twice never lengthens its life). DomainError 409 ``api_key_inactive`` for a revoked or
    expired key, 400 ``invalid_request`` for an overlap outside 0 to 30 days."""
    if not 0 <= overlap_seconds <= MAX_OVERLAP_S:
        raise DomainError(400, "invalid_request", f"overlap_seconds: from 0 to {MAX_OVERLAP_S}")
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise DomainError(409, "api_key_inactive", "this key is revoked or expired; create a new one instead")
    ends = now + timedelta(seconds=overlap_seconds)
    old.expires_at = min(old.expires_at, ends) if old.expires_at is not None else ends
    made = _make(caller, old.name, old.scope)
    caller.audit("api_key.rotate", f"api_key:{old.prefix}", new=f"api_key:{made.row.prefix}",
                 overlap_seconds=overlap_seconds)
    caller.scope.commit()
    return made
