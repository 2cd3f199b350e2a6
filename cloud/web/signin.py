"""Signing in and out with a built-in account, and the landing page that sends each role home.

Failed sign-ins are throttled per address and per account (token buckets, cloud/ratelimit.py) and
audited; the message never says whether the account exists.
"""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from cloud.admin import audit, normalise_email
from cloud.db import User
from cloud.db.session import get_db
from cloud.ratelimit import Limit, RateLimiter
from cloud.scoping import PlatformScope
from cloud.security import verify_password
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

bp = Blueprint("signin", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/portal")

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
        return render_template("login.html", email="", notice=g.get("signin_notice"))
    email = normalise_email(request.form.get("email", ""))[:320]
    password = request.form.get("password", "")
    wait = max(_throttle().take(f"ip:{client_ip()}", PER_ADDRESS),
               _throttle().take(f"email:{email}", PER_ACCOUNT))
    if wait > 0:
        audit(get_db(), "anonymous", "signin.throttled", target=f"email:{email}", ip=client_ip())
        get_db().commit()
        return render_template("login.html", email=email,
                               error=f"Too many attempts. Wait {int(wait) + 1} seconds and try again."), 429
    user = PlatformScope(get_db()).first(User, User.email == email)
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        audit(get_db(), "anonymous", "signin.failed", target=f"email:{email}", ip=client_ip(),
              tenant_id=user.tenant_id if user else None)
        get_db().commit()
        return render_template("login.html", email=email, error="That email and password do not match."), 401
    if user.tenant_id is not None:
        from cloud.db import Tenant

        tenant = PlatformScope(get_db()).get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            audit(get_db(), f"user:{user.id}", "signin.refused", target=f"user:{user.id}",
                  tenant_id=user.tenant_id, ip=client_ip(), reason="tenant suspended")
            get_db().commit()
            return render_template("login.html", email=email, error=SUSPENDED), 403
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


@bp.get("/account")
@allow(*EVERYONE)
def account():
    """Where a role without a portal page yet lands; personal settings grow here."""
    return render_template("account.html")
