"""The operator portal (role ``platform_admin``): the whole platform at a glance, and the few actions an
operator takes on it (suspend a tenant, disable an account).

Every view is declared ``@allow(*OPERATOR)`` and reads through the PlatformScope that access.py made
for the signed-in operator (``platform()``); the queries live in ``cloud.web.operator.queries``. The
state-changing actions are POST forms (CSRF-checked by cloud/web/csrf.py) that call the same
functions as the CLI (``cloud.tenants``) and write an audit entry in the same transaction. The audit
log is shown, filtered and paged here, and never edited or deleted.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import or_
from werkzeug.wrappers import Response

from cloud.admin import audit
from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin
from cloud.db import Tenant, User, utcnow
from cloud.db.session import get_db
from cloud.db.users import ROLES
from cloud.tenants import TenantStateError, reactivate_tenant, suspend_tenant
from cloud.web.access import OPERATOR, allow, client_ip, current_user, nav, platform
from cloud.web.operator import queries as q

bp = Blueprint("operator", __name__, url_prefix="/operator")

nav("operator", "Dashboard", "operator.dashboard")
nav("operator", "Tenants", "operator.tenants")
nav("operator", "System", "operator.system")
nav("operator", "Audit log", "operator.audit_log")
nav("operator", "Users", "operator.users")

TENANT_STATUSES = ("active", "suspended")
# Action families offered as suggestions in the audit filter (a prefix ending in "." matches them all).
AUDIT_ACTION_HINTS = ("signin.", "signin.failed", "signin.succeeded", "permission.refused", "tenant.",
                      "tenant.suspended", "tenant.reactivated", "user.", "user.disabled", "user.enabled",
                      "api_key.", "operator.create", "signout")
MAX_SEARCH = 200


def _actor() -> str:
    return f"user:{current_user().id}"


def _page_number(name: str = "page") -> int:
    try:
        return max(1, min(int(request.args.get(name, "1")), 100_000))
    except ValueError:
        return 1


def _back(default: str) -> str:
    """Where a POST returns to: the list the operator came from, if it is one of this portal's pages."""
    target = request.form.get("next", "")
    if target.startswith("/operator/") and not target.startswith("//"):
        return target
    return default


@bp.app_template_global("op_page_url")
def page_url(number: int, param: str = "page") -> str:
    """The current page's URL with another page number, keeping every filter."""
    args = {**request.args.to_dict(), param: number}
    return url_for(request.endpoint or "operator.dashboard", **(request.view_args or {}), **args)


@bp.app_template_filter("op_when")
def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


@bp.app_template_filter("op_ago")
def ago(value: Any) -> str:
    """How long ago, in the largest unit that says it: what an operator scanning a list needs."""
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# --- dashboard -------------------------------------------------------------------------------------

@bp.get("/")
@allow(*OPERATOR)
def dashboard() -> str:
    return render_template("operator/dashboard.html", d=q.dashboard(platform()), now=utcnow())


def _search() -> tuple[str, dict[str, str]]:
    """The list pages' search box (``q``), and its error if it is too long."""
    search = request.args.get("q", "").strip()
    errors = {"q": f"Search for at most {MAX_SEARCH} characters."} if len(search) > MAX_SEARCH else {}
    return search, errors


# --- tenants ---------------------------------------------------------------------------------------

@bp.get("/tenants")
@allow(*OPERATOR)
def tenants() -> tuple[str, int]:
    search, errors = _search()
    status = request.args.get("status", "")
    if status and status not in TENANT_STATUSES:
        errors["status"] = "Choose active, suspended or any status."
    found = None if errors else q.tenants(platform(), search, status, _page_number())
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
        devices=q.tenant_devices(scope, tenant.id, _page_number("devices_page")),
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
            disabled = suspend_tenant(get_db(), found.id, admin, _actor(), reason=form["reason"],
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
            enabled = reactivate_tenant(get_db(), found.id, admin, _actor(), ip=client_ip())
        finally:
            admin.close()
    except (TenantStateError, BrokerAdminError) as exc:
        get_db().rollback()
        flash(f"{name} was not reactivated: {exc}", "error")
        return redirect(url_for("operator.tenant", tenant_id=tenant_id))
    flash(f"{name} is active again: {enabled} device account(s) enabled; devices reconnect on their own.")
    return redirect(url_for("operator.tenant", tenant_id=tenant_id))


# --- system monitoring -----------------------------------------------------------------------------

@bp.get("/system")
@allow(*OPERATOR)
def system() -> str:
    scope = platform()
    stale_only = request.args.get("show") == "stale"
    workers = q.ingest_workers(scope)
    devices, paired, stale = q.device_health(scope, stale_only=stale_only, page=_page_number())
    config = current_app.extensions["voxfleet.config"]
    return render_template(
        "operator/system.html", database=q.check_database(scope),
        broker=q.check_broker(config, current_app.extensions.get("voxfleet.broker")),
        workers=workers, ingest=q.ingest_summary(workers), devices=devices, paired=paired, stale=stale,
        stale_only=stale_only, services=[label for label, _ in q.VOICE_SERVICES],
        stale_after=q.STALE_HEARTBEAT, worker_stale_after=q.STALE_WORKER)


# --- audit log -------------------------------------------------------------------------------------

def _parse_date(value: str, field: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = "Give a date as YYYY-MM-DD."
        return None


def _audit_filter(args: dict[str, str], errors: dict[str, str]) -> q.AuditFilter:
    scope = platform()
    tenant_id = None
    if args["tenant"]:
        ref = args["tenant"]
        conditions = [Tenant.slug == ref.lower()]
        with contextlib.suppress(ValueError):
            conditions.append(Tenant.id == uuid.UUID(ref))
        found = scope.first(Tenant, or_(*conditions))
        if found is None:
            errors["tenant"] = "No tenant with this slug or id."
        else:
            tenant_id = found.id
    actor = args["actor"] or None
    if actor and "@" in actor:
        user = scope.first(User, User.email == actor.lower())
        if user is None:
            errors["actor"] = "No account with this email. Give an email, or an actor as logged."
        else:
            actor = f"user:{user.id}"
    since = _parse_date(args["from"], "from", errors)
    until = _parse_date(args["to"], "to", errors)
    if since and until and since > until:
        errors["to"] = "The end date is before the start date."
    for name in ("tenant", "actor", "action"):
        if len(args[name]) > MAX_SEARCH:
            errors[name] = f"At most {MAX_SEARCH} characters."
    return q.AuditFilter(tenant_id, actor, args["action"] or None, since, until)


@bp.get("/audit")
@allow(*OPERATOR)
def audit_log() -> tuple[str, int]:
    args = {name: request.args.get(name, "").strip() for name in ("tenant", "actor", "action", "from", "to")}
    errors: dict[str, str] = {}
    where = _audit_filter(args, errors)
    scope = platform()
    found = None if errors else q.audit_entries(scope, where, _page_number())
    names = q.actor_names(scope, [e.actor for e in found.items]) if found else {}
    owners = q.tenant_names(scope, {e.tenant_id for e in found.items}) if found else {}
    filtered = any(args.values())
    return render_template("operator/audit.html", page=found, args=args, errors=errors, names=names,
                           owners=owners, filtered=filtered, hints=AUDIT_ACTION_HINTS), 400 if errors else 200


# --- users -----------------------------------------------------------------------------------------

@bp.get("/users")
@allow(*OPERATOR)
def users() -> tuple[str, int]:
    search, errors = _search()
    role = request.args.get("role", "")
    if role and role not in ROLES:
        errors["role"] = "Choose one of the listed roles."
    scope = platform()
    found = None if errors else q.users(scope, search, role, _page_number())
    owners = q.tenant_names(scope, {u.tenant_id for u in found.items}) if found else {}
    return render_template("operator/users.html", page=found, search=search, role=role, roles=ROLES,
                           owners=owners, errors=errors), 400 if errors else 200


def _set_disabled(user_id: uuid.UUID, disabled: bool) -> Response:
    scope = platform()
    user = scope.get(User, user_id)
    if user is None:
        abort(404)
    back = _back(url_for("operator.users"))
    if user.id == current_user().id:
        flash("You cannot disable your own account: ask another operator.", "error")
        return redirect(back)
    if user.disabled == disabled:
        flash(f"{user.email} is already {'disabled' if disabled else 'enabled'}.", "error")
        return redirect(back)
    user.disabled = disabled
    if disabled:  # ends every session now and for good: enabling again needs a fresh sign-in
        user.session_epoch = (user.session_epoch or 0) + 1
    audit(get_db(), _actor(), "user.disabled" if disabled else "user.enabled", target=f"user:{user.id}",
          tenant_id=user.tenant_id, ip=client_ip(), role=user.role)
    scope.commit()
    flash(f"{user.email} is disabled: their sessions have ended and they cannot sign in." if disabled
          else f"{user.email} is enabled: they can sign in again.")
    return redirect(back)


@bp.post("/users/<uuid:user_id>/disable")
@allow(*OPERATOR)
def disable_user(user_id: uuid.UUID) -> Response:
    return _set_disabled(user_id, True)


@bp.post("/users/<uuid:user_id>/enable")
@allow(*OPERATOR)
def enable_user(user_id: uuid.UUID) -> Response:
    return _set_disabled(user_id, False)


# The billing pages (revenue, invoices, plans) attach their views to ``bp`` on import.
from cloud.web.operator import billing  # noqa: E402, F401
