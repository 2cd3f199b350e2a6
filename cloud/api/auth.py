"""API-key authentication and rate limits for every /api/v1 request.

``Authorization: Bearer vfk_<prefix>_<secret>``. The key is found by its prefix (platform scope: the
tenant is not known yet), compared in constant time against its SHA-256 hash, and refused when
revoked, past its rotation overlap, or when its tenant is suspended. The rest of the request then
runs in a TenantScope for the key's tenant (``flask.g.scope``), so a view cannot reach another
tenant's rows even by mistake.

Public endpoints (health, the OpenAPI document, a device's own pairing calls) are marked with
``public`` (or ``endpoint(..., public=True)``) and limited per client address instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, g, request
from sqlalchemy import update

from cloud import security
from cloud.api.blueprint import api
from cloud.api.common import PUBLIC_ENDPOINTS, READ_METHODS, client_ip
from cloud.db import ApiKey, Tenant
from cloud.db.base import utcnow
from cloud.db.session import get_db
from cloud.errors import ApiError
from cloud.ratelimit import DEFAULT_IP_LIMIT, DEFAULT_KEY_LIMIT, Limit, RateLimiter, retry_after_header
from cloud.scoping import PlatformScope

log = logging.getLogger(__name__)

LAST_USED_EVERY = timedelta(seconds=60)
LIMITER_KEY = "voxfleet.ratelimit"
# Views of these modules authenticate a key when one is presented but do not require one: the pairing
# module serves devices (no key) and tenants (a key) and decides per view (cloud/api/pairing.py).
OPTIONAL_AUTH_MODULES = ("cloud.api.pairing",)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="voxfleet"'}


def public(view: Callable) -> Callable:
    """Mark a view of the /api/v1 blueprint as needing no API key (limited per client address)."""
    view.voxfleet_public = True  # type: ignore[attr-defined]
    return view


def configure(app: Flask) -> None:
    """Limits from the app's config (``API_RATE_LIMIT_BURST`` / ``_PER_MINUTE`` per key and
    ``API_IP_RATE_LIMIT_BURST`` / ``_PER_MINUTE`` per address), with the module's defaults."""
    config = app.extensions.get("voxfleet.config")
    for prefix, default in (("API_RATE_LIMIT", DEFAULT_KEY_LIMIT), ("API_IP_RATE_LIMIT", DEFAULT_IP_LIMIT)):
        # A field of the same name on CloudConfig (lower case), if the configuration grows one, wins.
        attr = prefix.lower()
        app.config.setdefault(f"{prefix}_BURST", getattr(config, f"{attr}_burst", default.burst))
        app.config.setdefault(f"{prefix}_PER_MINUTE",
                              getattr(config, f"{attr}_per_minute", default.per_minute))
    app.extensions.setdefault(LIMITER_KEY, RateLimiter())


def _limit(prefix: str) -> Limit:
    settings = current_app.config
    return Limit(int(settings[f"{prefix}_BURST"]), float(settings[f"{prefix}_PER_MINUTE"]))


def _charge(bucket: str, prefix: str) -> None:
    wait = current_app.extensions[LIMITER_KEY].take(bucket, _limit(prefix))
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many requests; retry later",
                       headers={"Retry-After": retry_after_header(wait)})


def _view_is(kind: str) -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    if kind == "public":
        return request.endpoint in PUBLIC_ENDPOINTS or bool(getattr(view, "voxfleet_public", False))
    return getattr(view, "__module__", "") in OPTIONAL_AUTH_MODULES


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "invalid_authorization", "use 'Authorization: Bearer <API key>'",
                       headers=_CHALLENGE)
    return value.strip()


def authenticate(key: str) -> ApiKey:
    """The live ApiKey row for a presented key, or ApiError 401/403 with a stable code.

    Revoked and expired are told apart only once the whole key matched, so a guesser learns nothing
    about which prefixes exist.
    """
    prefix = security.api_key_prefix(key)
    platform = PlatformScope(get_db())
    row = platform.first(ApiKey, ApiKey.prefix == prefix) if prefix else None
    if row is None or not security.api_key_matches(key, row.key_hash):
        raise ApiError(401, "invalid_api_key", "the API key is not valid", headers=_CHALLENGE)
    now = utcnow()
    if row.revoked_at is not None:
        raise ApiError(401, "api_key_revoked", "the API key has been revoked", headers=_CHALLENGE)
    if row.expires_at is not None and row.expires_at <= now:
        raise ApiError(401, "api_key_expired", "the API key has expired (it was rotated)", headers=_CHALLENGE)
    tenant = platform.get(Tenant, row.tenant_id)
    if tenant is None or tenant.status != "active":
        raise ApiError(403, "tenant_suspended", "this tenant is suspended")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        # At most once a minute per key: a write on every request would cost more than it tells.
        platform.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        platform.commit()
    return row


@api.before_request
def _authenticate_request() -> Any:
    g.scope = None
    public_view = _view_is("public")
    optional = _view_is("optional")
    if public_view or request.endpoint is None:  # public, or no such route (a 404 follows)
        _charge(f"ip:{client_ip()}", "API_IP_RATE_LIMIT")
        return None
    try:
        key = _presented_key()
        if key is None:
            if optional:
                _charge(f"ip:{client_ip()}", "API_IP_RATE_LIMIT")
                return None
            raise ApiError(401, "missing_api_key", "send an API key: 'Authorization: Bearer <key>'",
                           headers=_CHALLENGE)
        row = authenticate(key)
    except ApiError as exc:
        if exc.status in (401, 403):
            # Failed attempts count against the address, so keys cannot be guessed at full speed.
            _charge(f"ip:{client_ip()}", "API_IP_RATE_LIMIT")
        raise
    _charge(f"key:{row.prefix}", "API_RATE_LIMIT")
    if row.scope != "write" and request.method not in READ_METHODS:
        raise ApiError(403, "insufficient_scope", "this API key is read-only; this needs a write key")
    g.api_key = row
    g.actor = f"api_key:{row.prefix}"
    g.scope = PlatformScope(get_db()).for_tenant(row.tenant_id)
    return None
