"""Who is signed in, and who may use which page.

Every view of a portal declares its roles with ``@allow(...)``; a page without a declaration is
refused to everyone (deny by default), so a forgotten decorator fails closed. The declarations are
also what the route matrix test checks every route against.

Sessions are Flask's signed cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS) holding the user id
and a fingerprint of the user's credentials: changing the password (or being disabled, or the tenant
being suspended) ends every other session of that user on its next request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for

from cloud.db import Tenant, User
from cloud.db.base import utcnow
from cloud.db.session import get_db
from cloud.scoping import PlatformScope, TenantScope

OPERATOR = ("platform_admin",)
TENANT_ADMINS = ("tenant_owner", "tenant_admin")
TENANT_USERS = ("tenant_owner", "tenant_admin", "tenant_member")
EVERYONE = ("platform_admin", "tenant_owner", "tenant_admin", "tenant_member")
PUBLIC = "public"

SESSION_LIFETIME = timedelta(hours=12)
PORTAL_HOME = {"platform_admin": "operator.dashboard", "tenant_owner": "tenant.dashboard",
               "tenant_admin": "tenant.dashboard", "tenant_member": "member.dashboard"}
PORTAL_OF_ROLE = {"platform_admin": "operator", "tenant_owner": "tenant", "tenant_admin": "tenant",
                  "tenant_member": "member"}


@dataclass(frozen=True)
class NavItem:
    portal: str
    label: str
    endpoint: str


NAV: list[NavItem] = []


def nav(portal: str, label: str, endpoint: str) -> None:
    """Add a page to a portal's navigation (in the order called)."""
    NAV.append(NavItem(portal, label, endpoint))


def allow(*roles: str) -> Callable:
    """Declare who may use a view: role names, or ``PUBLIC``."""

    def decorate(view: Callable) -> Callable:
        view.voxfleet_roles = tuple(roles)  # type: ignore[attr-defined]
        return view

    return decorate


def declared_roles(endpoint: str | None) -> tuple[str, ...] | None:
    view = current_app.view_functions.get(endpoint or "")
    return getattr(view, "voxfleet_roles", None)


def fingerprint(user: User) -> str:
    basis = (f"{user.id}|{user.password_hash or ''}|{user.external_subject or ''}|{user.role}|"
             f"{user.session_epoch or 0}")
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def current_user() -> User | None:
    return g.get("user")


def scope() -> TenantScope:
    """The signed-in tenant user's scope; every tenant page reads through it."""
    user = current_user()
    if user is None or user.tenant_id is None:
        abort(403)
    return g.scope


def platform() -> PlatformScope:
    user = current_user()
    if user is None or user.role != "platform_admin":
        abort(403)
    return g.platform


def login_user(user: User, method: str = "password") -> None:
    """Start a fresh session (a new cookie: no fixation) and record the sign-in."""
    from cloud.admin import audit

    session.clear()
    session.permanent = True
    session["uid"] = str(user.id)
    session["ufp"] = fingerprint(user)
    user.last_login_at = utcnow()
    audit(get_db(), f"user:{user.id}", "signin.succeeded", target=f"user:{user.id}", tenant_id=user.tenant_id,
          ip=client_ip(), method=method)


def logout_user() -> None:
    session.clear()


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def home_url(user: User) -> str:
    endpoint = PORTAL_HOME[user.role]
    return url_for(endpoint) if endpoint in current_app.view_functions else url_for("signin.account")


def _load_user() -> None:
    g.user = None
    uid = session.get("uid")
    if not uid or request.path.startswith(("/api/", "/static/")):
        return
    db = get_db()
    platform_scope = PlatformScope(db)
    user = platform_scope.get(User, uid)
    if user is None or user.disabled or session.get("ufp") != fingerprint(user):
        session.clear()
        return
    if user.tenant_id is not None:
        tenant = platform_scope.get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            session.clear()
            g.signin_notice = "Your organisation's account is suspended. Contact the service operator."
            return
        g.tenant = tenant
        g.scope = platform_scope.for_tenant(user.tenant_id)
    else:
        g.platform = platform_scope
    g.user = user


def _enforce() -> Any:
    endpoint = request.endpoint
    if endpoint is None or endpoint.endswith("static") or request.path.startswith("/api/"):
        return None  # stylesheets and scripts are public; the API authenticates with keys
    roles = declared_roles(endpoint)
    if roles == (PUBLIC,):
        return None
    user = current_user()
    if user is None:
        return redirect(url_for("signin.login", next=request.full_path.rstrip("?")))
    if roles is None or user.role not in roles:
        from cloud.admin import audit

        audit(get_db(), f"user:{user.id}", "permission.refused", target=request.path[:200],
              tenant_id=user.tenant_id, ip=client_ip(), role=user.role)
        get_db().commit()
        abort(403)
    return None


def _template_globals() -> dict[str, Any]:
    user = current_user()
    portal = PORTAL_OF_ROLE.get(user.role) if user else None
    items = [i for i in NAV if i.portal == portal and i.endpoint in current_app.view_functions]
    return {"current_user": user, "portal": portal, "nav_items": items, "tenant": g.get("tenant")}


MESSAGES = {
    400: ("Could not do that", None),
    402: ("Plan limit reached", None),
    403: ("Not allowed", "Your role does not give access to this page."),
    404: ("Not found", "There is no such page, or it belongs to someone else."),
    405: ("Not allowed", "That page does not accept this kind of request."),
    409: ("Could not do that", None),
    410: ("No longer valid", None),
    413: ("Too large", "What was sent is too large."),
    422: ("Could not do that", None),
    429: ("Slow down", "Too many attempts; wait a moment and try again."),
    503: ("Not available now", None),
    500: ("Something went wrong", "The error has been logged. Try again in a moment."),
}


def error_page(error: Any) -> Any:
    """The portals' error page, for every HTTP error outside /api/ (cloud/errors.py calls it)."""
    code = getattr(error, "code", None) or 500
    title, message = MESSAGES.get(code, ("Error", None))
    message = message or getattr(error, "description", None) or "The request could not be completed."
    response = render_template("error.html", code=code, title=title, message=message)
    headers = {k: v for k, v in error.get_headers() if k in ("Retry-After", "Allow")} \
        if hasattr(error, "get_headers") else {}
    return response, code, headers


def init_app(app: Flask) -> None:
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", SESSION_LIFETIME)
    public_url = app.extensions["voxfleet.config"].public_url or ""
    app.config["SESSION_COOKIE_SECURE"] = public_url.startswith("https://")
    app.config["SESSION_COOKIE_NAME"] = "voxfleet_session"
    app.extensions["voxfleet.error_page"] = error_page
    app.before_request(_load_user)
    app.before_request(_enforce)
    app.context_processor(_template_globals)
