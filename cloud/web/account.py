"""A person's own account: personal settings, password change, and the public pages reached by link
(forgotten password, password reset, invitation acceptance).

Why each choice:
- Changing the password needs the current one (a borrowed, signed-in browser must not be enough to
  lock the owner out), and it ends every other session: the session fingerprint covers the hash
  (cloud/web/access.py), so only this session is re-keyed.
- The forgotten-password form answers the same whether or not the email has an account, and is
  throttled; the link goes out by mail only. Without SMTP an operator or tenant admin makes the link
  from their portal (cloud/web/identity/invites.py) and hands it over.
- Reset and invite links work once and expire (cloud/security.py); a used or expired link gets a
  page that says so and what to do next, and an audit entry.
"""

from __future__ import annotations

import contextlib

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from cloud import security
from cloud.admin import AdminError, audit, normalise_email
from cloud.db.session import get_db
from cloud.ratelimit import Limit, RateLimiter
from cloud.web.access import (
    EVERYONE,
    PUBLIC,
    allow,
    client_ip,
    current_user,
    fingerprint,
    home_url,
    login_user,
)
from cloud.web.identity import invites, mail, preferences

bp = Blueprint("account", __name__, template_folder="templates")

RESET_PER_ADDRESS = Limit(burst=5, per_minute=2)
RESET_PER_EMAIL = Limit(burst=3, per_minute=1)
CHANGE_PER_USER = Limit(burst=5, per_minute=5)


def _throttle() -> RateLimiter:
    return current_app.extensions.setdefault("voxfleet.account_throttle", RateLimiter())


def _uses_password(user) -> bool:
    return not user.external_subject


# --- personal settings (served at /account as ``signin.account``: the header's "Account" link) -------

@allow(*EVERYONE)
def settings():
    """Name and notification preferences, and where the password is changed."""
    user = current_user()
    db = get_db()
    prefs = preferences.load(db, user)
    errors: dict[str, str] = {}
    name = user.name
    if request.method == "POST":
        section = request.form.get("section")
        if section == "profile":
            name = request.form.get("name", "").strip()
            if len(name) > 200:
                errors["name"] = "Use at most 200 characters."
            else:
                if name != user.name:
                    audit(db, f"user:{user.id}", "account.profile", target=f"user:{user.id}",
                          tenant_id=user.tenant_id, ip=client_ip(), fields=["name"])
                    user.name = name
                db.commit()
                flash("Your name is saved.")
                return redirect(url_for("signin.account"))
        elif section == "notifications":
            chosen = {p.key: request.form.get(p.key) == "on" for p in preferences.choices_for(user)}
            preferences.save(db, user, chosen, ip=client_ip())
            db.commit()
            flash("Your notification preferences are saved.")
            return redirect(url_for("signin.account"))
    return render_template("account.html", name=name, errors=errors, prefs=prefs,
                           choices=preferences.choices_for(user), uses_password=_uses_password(user)), \
        (400 if errors else 200)


# --- password change ------------------------------------------------------------------------------

@bp.route("/account/password", methods=["GET", "POST"])
@allow(*EVERYONE)
def password():
    user = current_user()
    if not _uses_password(user):
        return render_template("password.html", external=True)
    if request.method == "GET":
        return render_template("password.html", errors={})
    db = get_db()
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    confirm = request.form.get("confirm_password", "")
    errors: dict[str, str] = {}
    wait = _throttle().take(f"change:{user.id}", CHANGE_PER_USER)
    if wait > 0:
        audit(db, f"user:{user.id}", "password.change_throttled", target=f"user:{user.id}",
              tenant_id=user.tenant_id, ip=client_ip())
        db.commit()
        errors["current_password"] = f"Too many attempts. Wait {int(wait) + 1} seconds and try again."
        return render_template("password.html", errors=errors), 429
    if not security.verify_password(user.password_hash, current):
        errors["current_password"] = "That is not your current password."
        audit(db, f"user:{user.id}", "password.change_failed", target=f"user:{user.id}",
              tenant_id=user.tenant_id, ip=client_ip(), reason="wrong current password")
        db.commit()
        return render_template("password.html", errors=errors), 400
    try:
        security.check_password_strength(new)
    except security.WeakPassword as exc:
        errors["new_password"] = _sentence(str(exc))
    if not errors.get("new_password") and new == current:
        errors["new_password"] = "Choose a password different from your current one."
    if not errors and confirm != new:
        errors["confirm_password"] = "The two new passwords are not the same."
    if errors:
        return render_template("password.html", errors=errors), 400
    invites.set_password(db, user, new)
    audit(db, f"user:{user.id}", "password.changed", target=f"user:{user.id}", tenant_id=user.tenant_id,
          ip=client_ip())
    db.commit()
    # This session carries on with the new fingerprint; every other one ends on its next request.
    session["ufp"] = fingerprint(user)
    _notify_password_changed(user)
    flash("Your password is changed. You were signed out everywhere else.")
    return redirect(url_for("signin.account"))


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + "."


def _notify_password_changed(user) -> None:
    config = current_app.extensions["voxfleet.config"]
    if not mail.mail_configured(config) or not preferences.load(get_db(), user).get("security", True):
        return
    with contextlib.suppress(mail.MailError):  # logged by mail.send_mail; the change itself stands
        mail.send_mail(config, user.email, "Your VoxFleet password was changed",
                       "The password of your VoxFleet account was just changed. If it was not you, "
                       "reset it at once from the sign-in page and tell your administrator.\n")


# --- forgotten password ---------------------------------------------------------------------------

FORGOT_SENT = ("If an account uses that email, a link to set a new password is on its way. It works once, "
               "for a limited time. No email? Ask your administrator for a reset link.")


@bp.route("/password/forgot", methods=["GET", "POST"])
@allow(PUBLIC)
def forgot():
    if request.method == "GET":
        return render_template("forgot.html", email="", errors={})
    raw = request.form.get("email", "")
    try:
        email = normalise_email(raw)
    except AdminError:
        return render_template("forgot.html", email=raw[:320],
                               errors={"email": "Enter an email address like name@example.com."}), 400
    db = get_db()
    wait = max(_throttle().take(f"reset-ip:{client_ip()}", RESET_PER_ADDRESS),
               _throttle().take(f"reset-email:{email}", RESET_PER_EMAIL))
    if wait > 0:
        audit(db, "anonymous", "password_reset.throttled", target=f"email:{email}", ip=client_ip())
        db.commit()
        return render_template("forgot.html", email=email, errors={
            "email": f"Too many requests. Wait {int(wait) + 1} seconds and try again."}), 429
    user = invites.find_user_for_reset(db, email)
    config = current_app.extensions["voxfleet.config"]
    delivered = "no account"
    if user is not None:
        if mail.mail_configured(config):
            link = invites.send_or_return_link(user, "reset", db=db, actor="anonymous", config=config)
            delivered = "mailed" if link is None else "mail_failed"
        else:
            delivered = "no mail server"
    audit(db, "anonymous", "password_reset.requested", target=f"email:{email}", ip=client_ip(),
          tenant_id=user.tenant_id if user else None, delivered=delivered)
    db.commit()
    # The same answer whatever happened: the page never tells whether the account exists.
    return render_template("forgot.html", email=email, errors={}, sent=FORGOT_SENT)


# --- links: password reset and invitation -----------------------------------------------------------

def _link_refused(kind: str, exc: Exception, reason: str):
    action = "invite.link_refused" if kind == "invite" else "password_reset.link_refused"
    audit(get_db(), "anonymous", action, target=None, ip=client_ip(), reason=reason)
    get_db().commit()
    title = "This invitation cannot be used" if kind == "invite" else "This reset link cannot be used"
    if kind == "invite" and reason in ("expired", "invalid"):
        hint = "Ask whoever invited you to send a new invitation."
    elif kind == "invite":
        hint = None
    else:
        hint = "You can ask for a new link below."
    message = str(exc)
    message = message[:1].upper() + message[1:].rstrip(".") + "."
    status = 410 if reason in ("expired", "used") else 400
    return render_template("link_refused.html", title=title, message=message, hint=hint, kind=kind), status


def _user_for(kind: invites.LinkKind, token: str):
    try:
        return invites.user_for_token(get_db(), kind, token), None
    except security.InvalidInvite as exc:
        return None, _link_refused(kind, exc, "expired" if "expired" in str(exc) else "invalid")
    except security.InvalidReset as exc:
        return None, _link_refused(kind, exc, "expired" if "expired" in str(exc) else "invalid")
    except invites.LinkError as exc:
        return None, _link_refused(kind, exc, exc.reason)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@allow(PUBLIC)
def reset(token: str):
    user, refused = _user_for("reset", token)
    if refused is not None:
        return refused
    if request.method == "GET":
        return render_template("reset.html", email=user.email, errors={})
    new = request.form.get("new_password", "")
    errors: dict[str, str] = {}
    try:
        security.check_password_strength(new)
    except security.WeakPassword as exc:
        errors["new_password"] = _sentence(str(exc))
    if not errors and request.form.get("confirm_password", "") != new:
        errors["confirm_password"] = "The two passwords are not the same."
    if errors:
        return render_template("reset.html", email=user.email, errors=errors), 400
    db = get_db()
    invites.set_password(db, user, new)
    audit(db, f"user:{user.id}", "password.reset", target=f"user:{user.id}", tenant_id=user.tenant_id,
          ip=client_ip())
    login_user(user, method="password_reset")
    db.commit()
    flash("Your new password is set. You were signed out everywhere else.")
    return redirect(home_url(user))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@allow(PUBLIC)
def invite(token: str):
    user, refused = _user_for("invite", token)
    if refused is not None:
        return refused
    if request.method == "GET":
        return render_template("invite.html", user=user, name=user.name, errors={}, organisation=_org(user))
    name = request.form.get("name", "").strip()
    new = request.form.get("new_password", "")
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Tell us your name, as your team will see it."
    elif len(name) > 200:
        errors["name"] = "Use at most 200 characters."
    try:
        security.check_password_strength(new)
    except security.WeakPassword as exc:
        errors["new_password"] = _sentence(str(exc))
    if "new_password" not in errors and request.form.get("confirm_password", "") != new:
        errors["confirm_password"] = "The two passwords are not the same."
    if errors:
        return render_template("invite.html", user=user, name=name, errors=errors,
                               organisation=_org(user)), 400
    db = get_db()
    user.name = name
    invites.set_password(db, user, new)
    audit(db, f"user:{user.id}", "invite.accepted", target=f"user:{user.id}", tenant_id=user.tenant_id,
          ip=client_ip())
    login_user(user, method="invite")
    db.commit()
    flash("Welcome to VoxFleet. Your account is ready.")
    return redirect(home_url(user))


def _org(user) -> str | None:
    if user.tenant_id is None:
        return None
    from cloud.db import Tenant
    from cloud.scoping import PlatformScope

    tenant = PlatformScope(get_db()).get(Tenant, user.tenant_id)
    return tenant.name if tenant else None


@bp.after_app_request
def _link_headers(response):
    """A link's page must not leak its token through the Referer header or a shared cache."""
    if request.path.startswith(("/invite/", "/password/reset/")):
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
    return response
