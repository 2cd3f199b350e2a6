"""Signing in and out (built-in accounts and Keycloak), and the landing page that sends each role home.

Failed sign-ins are throttled per address and per account (token buckets, cloud/ratelimit.py) and
audited; the message never says whether the account exists. Keycloak sign-in (OIDC code flow with
PKCE) starts at ``/login/keycloak`` (the platform realm) or ``/login/keycloak?organisation=<slug>``
(a tenant's own realm) and comes back to ``/login/keycloak/callback``; the checks and the mapping of
token to tenant and role are in cloud/web/identity/keycloak.py.
"""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from keycloak.exceptions import KeycloakError

from cloud.admin import audit, normalise_email
from cloud.db import User
from cloud.db.session import get_db
from cloud.ratelimit import Limit, RateLimiter
from cloud.scoping import PlatformScope
from cloud.security import verify_password
from cloud.web import account
from cloud.web.access import (
    EVERYONE,
    PUBLIC,
    allow,
    client_ip,
    current_user,
    home_url,
    login_user,
    logout_user,
)
from cloud.web.identity import keycloak as kc
from cloud.web.identity import logs

bp = Blueprint("signin", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/portal")
bp.record_once(lambda _state: logs.install())

PER_ADDRESS = Limit(burst=10, per_minute=10)
PER_ACCOUNT = Limit(burst=5, per_minute=5)


def _throttle() -> RateLimiter:
    """Per app (each process holds its own buckets, as for the API: cloud/ratelimit.py)."""
    return current_app.extensions.setdefault("voxfleet.signin_throttle", RateLimiter())

SUSPENDED = "Your organisation's account is suspended. Contact the service operator."


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect to somebody else's."""
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.get("/")
@allow(PUBLIC)
def index():
    user = current_user()
    return redirect(home_url(user) if user else url_for("signin.login"))


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login():
    if request.method == "GET":
        if current_user() is not None:
            return redirect(home_url(current_user()))
        return _login_page(email="", notice=g.get("signin_notice"))
    email = normalise_email(request.form.get("email", ""))[:320]
    password = request.form.get("password", "")
    wait = max(_throttle().take(f"ip:{client_ip()}", PER_ADDRESS),
               _throttle().take(f"email:{email}", PER_ACCOUNT))
    if wait > 0:
        audit(get_db(), "anonymous", "signin.throttled", target=f"email:{email}", ip=client_ip())
        get_db().commit()
        return _login_page(email=email,
                               error=f"Too many attempts. Wait {int(wait) + 1} seconds and try again."), 429
    user = PlatformScope(get_db()).first(User, User.email == email)
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        audit(get_db(), "anonymous", "signin.failed", target=f"email:{email}", ip=client_ip(),
              tenant_id=user.tenant_id if user else None)
        get_db().commit()
        return _login_page(email=email, error="That email and password do not match."), 401
    if user.tenant_id is not None:
        from cloud.db import Tenant

        tenant = PlatformScope(get_db()).get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            audit(get_db(), f"user:{user.id}", "signin.refused", target=f"user:{user.id}",
                  tenant_id=user.tenant_id, ip=client_ip(), reason="tenant suspended")
            get_db().commit()
            return _login_page(email=email, error=SUSPENDED), 403
    login_user(user)
    get_db().commit()
    return redirect(_safe_next(request.args.get("next")) or home_url(user))


@bp.post("/logout")
@allow(*EVERYONE)
def logout():
    user = current_user()
    audit(get_db(), f"user:{user.id}", "signout", target=f"user:{user.id}", tenant_id=user.tenant_id,
          ip=client_ip())
    get_db().commit()
    logout_user()
    flash("You are signed out.")
    return redirect(url_for("signin.login"))


# Personal settings live in cloud/web/account.py; the endpoint keeps its name (signin.account) because
# the layout's "Account" link and the landing page of roles without a portal use it.
bp.add_url_rule("/account", "account", account.settings, methods=["GET", "POST"])


def _login_page(**context):
    config = current_app.extensions["voxfleet.config"]
    return render_template("login.html", platform_sso=config.keycloak is not None,
                           tenant_sso=bool(config.keycloak_tenants), **context)


# --- Keycloak ------------------------------------------------------------------------------------

def _refused(exc: kc.KeycloakRefused, realm_key: str | None):
    audit(get_db(), "anonymous", "signin.keycloak_refused", target=f"keycloak:{realm_key or '?'}",
          ip=client_ip(), reason=exc.reason)
    get_db().commit()
    return render_template("keycloak_refused.html", message=exc.message), exc.status


@bp.get("/login/keycloak")
@allow(PUBLIC)
def keycloak_login():
    organisation = (request.args.get("organisation") or "").strip().lower()[:64] or None
    realm = kc.realm_for(organisation)
    if realm is None:
        if organisation:
            return _login_page(email="", sso_organisation=organisation,
                               sso_error="This organisation has no single sign-on here. Use your email "
                                         "and password, or check the name."), 404
        flash("Single sign-on is not set up on this service: sign in with your email and password.",
              "warning")
        return redirect(url_for("signin.login"))
    try:
        # The public address (what the realm has registered as a redirect URI), not the request's Host.
        callback = current_app.extensions["voxfleet.config"].base_url + url_for("signin.keycloak_callback")
        target = kc.begin_login(realm, callback, session, _safe_next(request.args.get("next")))
    except KeycloakError:
        return _refused(kc.KeycloakRefused("Keycloak cannot be reached right now. Try again in a moment.",
                                           "discovery failed", 502), realm.key)
    return redirect(target)


@bp.get("/login/keycloak/callback")
@allow(PUBLIC)
def keycloak_callback():
    pending = session.pop("kc", None) or {}
    realm_key = pending.get("realm")
    db = get_db()
    try:
        realm, claims = kc.exchange_and_verify(pending, request.args.to_dict())
        user = kc.sign_in_user(db, realm, claims, ip=client_ip())
    except kc.KeycloakRefused as exc:
        db.rollback()
        return _refused(exc, realm_key)
    except KeycloakError:
        db.rollback()
        return _refused(kc.KeycloakRefused("Keycloak cannot be reached right now. Try again in a moment.",
                                           "keycloak unreachable", 502), realm_key)
    login_user(user, method=f"keycloak:{realm.key}")
    db.commit()
    return redirect(_safe_next(pending.get("next")) or home_url(user))
