"""Tenants: the list, one tenant, suspend and reactivate."""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin
from cloud.db import Tenant, utcnow
from cloud.db.session import get_db
from cloud.tenants import TenantStateError, reactivate_tenant, suspend_tenant
from cloud.web.access import OPERATOR, allow, client_ip, platform
from cloud.web.operator import queries as q
from cloud.web.operator.blueprint import (
    TENANT_STATUSES,
    actor,
    bp,
    page_number,
    search_box,
)


@bp.get("/tenants")
@allow(*OPERATOR)
def tenants() -> tuple[str, int]:
    search, errors = search_box()
    status = request.args.get("status", "")
    if status and status not in TENANT_STATUSES:
        errors["status"] = "Choose active, suspended or any status."
    found = None if errors else q.tenants(platform(), search, status, page_number())
    return render_template("operator/tenants.html", page=found, search=search, status=status,
                           statuses=TENANT_STATUSES, errors=errors), 400 if errors else 200


def _tenant_or_404(tenant_id: uuid.UUID) -> Tenant:
    tenant = platform().get(Tenant, tenant_id)
    if tenant is None:
        abort(404)
    return tenant


def _render_tenant(tenant: Tenant, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                   status: int = 200) -> tuple[str, int]:
    scope = platform()
    entries = q.recent_audit(scope, tenant.id)
    return render_template(
        "operator/tenant.html", t=tenant,
        devices=q.tenant_devices(scope, tenant.id, page_number("devices_page")),
        users=q.tenant_users(scope, tenant.id), usage=q.tenant_usage(scope, tenant.id), entries=entries,
        names=q.actor_names(scope, [e.actor for e in entries]), form=form or {}, errors=errors or {},
        stale_after=q.STALE_HEARTBEAT, now=utcnow()), status


@bp.get("/tenants/<uuid:tenant_id>")
@allow(*OPERATOR)
def tenant(tenant_id: uuid.UUID) -> tuple[str, int]:
    return _render_tenant(_tenant_or_404(tenant_id))


def _broker_admin() -> Any:
    config = current_app.extensions["voxfleet.config"]
    return broker_admin(config, current_app.extensions.get("voxfleet.broker"))


@bp.post("/tenants/<uuid:tenant_id>/suspend")
@allow(*OPERATOR)
def suspend(tenant_id: uuid.UUID) -> Response | tuple[str, int]:
    """Suspend after the operator gave a reason and typed the tenant's slug: the action disconnects a
    customer's whole fleet, so it asks for more than one click."""
    found = _tenant_or_404(tenant_id)
    if found.status == "suspended":  # a second tab, or a double submit
        flash(f"{found.name} was not suspended: it is already suspended.", "error")
        return redirect(url_for("operator.tenant", tenant_id=tenant_id))
    form = {name: request.form.get(name, "").strip() for name in ("reason", "confirm")}
    errors = {}
    if len(form["reason"]) < 3:
        errors["reason"] = "Say why (at least 3 characters): the reason is kept in the audit log."
    elif len(form["reason"]) > 500:
        errors["reason"] = "Keep the reason to 500 characters."
    if form["confirm"] != found.slug:
        errors["confirm"] = f"Type {found.slug} to confirm."
    if errors:
        return _render_tenant(found, form, errors, 400)
    name = found.name
    try:
        admin = _broker_admin()
        try:
            disabled = suspend_tenant(get_db(), found.id, admin, actor(), reason=form["reason"],
                                      ip=client_ip())
        finally:
            admin.close()
    except (TenantStateError, BrokerAdminError) as exc:
        get_db().rollback()
        flash(f"{name} was not suspended: {exc}", "error")
        return redirect(url_for("operator.tenant", tenant_id=tenant_id))
    flash(f"{name} is suspended: {disabled} device account(s) disabled on the broker, its people and API "
          "keys refused.")
    return redirect(url_for("operator.tenant", tenant_id=tenant_id))


@bp.post("/tenants/<uuid:tenant_id>/reactivate")
@allow(*OPERATOR)
def reactivate(tenant_id: uuid.UUID) -> Response:
    found = _tenant_or_404(tenant_id)
    name = found.name
    try:
        admin = _broker_admin()
        try:
            enabled = reactivate_tenant(get_db(), found.id, admin, actor(), ip=client_ip())
        finally:
            admin.close()
    except (TenantStateError, BrokerAdminError) as exc:
        get_db().rollback()
        flash(f"{name} was not reactivated: {exc}", "error")
        return redirect(url_for("operator.tenant", tenant_id=tenant_id))
    flash(f"{name} is active again: {enabled} device account(s) enabled; devices reconnect on their own.")
    return redirect(url_for("operator.tenant", tenant_id=tenant_id))
