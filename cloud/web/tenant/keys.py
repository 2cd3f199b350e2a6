"""API keys: create (the key shown once, on the page that answers the form, never stored or logged),
rotate with an overlap window, revoke, and when each was last used."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from cloud.db import ApiKey
from cloud.db.base import utcnow
from cloud.domain import api_keys
from cloud.domain.errors import DomainError
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.refusals import sentence
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import caller, owned

OVERLAPS = {"0": "End the old key now", "3600": "1 hour", "86400": "24 hours", "604800": "7 days"}


def key_state(row: ApiKey) -> str:
    now = utcnow()
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None:
        return "expired" if row.expires_at <= now else "expiring"
    return "active"


def _page(
    new_key: str | None = None,
    new_row: ApiKey | None = None,
    form: dict | None = None,
    errors: dict | None = None,
    status: int = 200,
):
    rows = scope().all(ApiKey, order_by=[ApiKey.created_at.desc(), ApiKey.id.desc()])
    response = render_template(
        "tenant/keys.html",
        keys=rows,
        state=key_state,
        new_key=new_key,
        new_row=new_row,
        form=form or {"name": "", "scope": "read"},
        errors=errors or {},
        overlaps=OVERLAPS,
    )
    headers = {"Cache-Control": "no-store"} if new_key else {}
    return response, status, headers


@bp.get("/keys")
@allow(*TENANT_ADMINS)
def keys():
    return _page()


@bp.post("/keys")
@allow(*TENANT_ADMINS)
def create_key():
    form = {"name": request.form.get("name", "").strip(), "scope": request.form.get("scope", "")}
    errors = {}
    if len(form["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if form["scope"] not in ("read", "write"):
        errors["scope"] = "Choose read or write."
    if errors:
        return _page(form=form, errors=errors, status=400)
    made = api_keys.create_api_key(caller(), form["name"], form["scope"])
    return _page(new_key=made.key, new_row=made.row, status=201)


@bp.post("/keys/<uuid:key_id>/rotate")
@allow(*TENANT_ADMINS)
def rotate_key(key_id):
    old = owned(ApiKey, key_id)
    overlap = request.form.get("overlap_seconds", "86400")
    if overlap not in OVERLAPS:
        flash("Choose how long the old key keeps working.", "error")
        return redirect(url_for("tenant.keys"))
    try:
        made = api_keys.rotate_api_key(caller(), old, int(overlap))
    except DomainError as exc:
        scope().db.rollback()
        flash(sentence(exc), "error")
        return redirect(url_for("tenant.keys"))
    return _page(new_key=made.key, new_row=made.row, status=201)


@bp.post("/keys/<uuid:key_id>/revoke")
@allow(*TENANT_ADMINS)
def revoke_key(key_id):
    row = api_keys.revoke_api_key(caller(), owned(ApiKey, key_id))
    flash(f"Key {row.prefix} is revoked: requests with it are refused from now on.")
    return redirect(url_for("tenant.keys"))
