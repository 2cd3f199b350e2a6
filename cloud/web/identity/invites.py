"""Invitation and password reset links for built-in accounts, and the functions the portals call.

Both kinds of link are itsdangerous signatures over the user id and a fingerprint of the user's
current password hash (cloud/security.py): they expire, and they stop working the moment a password
is set, so each works once without any table of used tokens. They differ in salt, so one can never
stand in for the other.

Where SMTP is configured the link is mailed to the person; otherwise it is returned so the portal can
show it to the administrator who asked for it (never to the person asking at the public reset form,
which would let anyone take over any account).

For the portals:

    user, link = invite_user(scope, tenant_id, "ana@example.com", "tenant_admin", invited_by=current_user())
    if link: show it ("Send this link to Ana"), else: "We emailed Ana an invitation."

    link = send_or_return_link(user, kind="reset", actor=f"user:{current_user().id}")
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal

from flask import current_app, has_request_context
from sqlalchemy import func
from sqlalchemy.orm import Session

from cloud import security
from cloud.admin import AdminError, audit, normalise_email
from cloud.config import CloudConfig
from cloud.db import Tenant, User
from cloud.scoping import PlatformScope, TenantScope
from cloud.web.identity import mail

log = logging.getLogger(__name__)

TENANT_ROLES = ("tenant_owner", "tenant_admin", "tenant_member")
LinkKind = Literal["invite", "reset"]


class InviteError(ValueError):
    """An invitation a person can fix; ``field`` names the form field to show it beside."""

    def __init__(self, message: str, field: str = "email") -> None:
        super().__init__(message)
        self.field = field


def _config(config: CloudConfig | None) -> CloudConfig:
    return config or current_app.extensions["voxfleet.config"]


def _actor(who: User | str | None) -> str:
    if isinstance(who, User):
        return f"user:{who.id}"
    return who or "system"


def _ip() -> str | None:
    if not has_request_context():
        return None
    from cloud.web.access import client_ip

    return client_ip()


def invite_link_for(user: User, config: CloudConfig | None = None) -> str:
    """The invitation link for someone who has not set a password yet (valid 7 days, once)."""
    config = _config(config)
    token = security.invite_token(config.secret_key.get_secret_value(), str(user.id), user.password_hash)
    return f"{config.base_url}/invite/{token}"


def reset_link_for(user: User, config: CloudConfig | None = None) -> str:
    """A password reset link for ``user`` (valid ``password_reset_max_age_s``, once)."""
    config = _config(config)
    token = security.reset_token(config.secret_key.get_secret_value(), str(user.id), user.password_hash)
    return f"{config.base_url}/password/reset/{token}"


def _message(kind: LinkKind, link: str, tenant_name: str | None, config: CloudConfig) -> tuple[str, str]:
    if kind == "invite":
        where = f" to {tenant_name}" if tenant_name else ""
        return (f"You are invited{where} on VoxFleet",
                f"You have been invited{where} on VoxFleet.\n\nChoose your name and password here "
                f"(the link works once, for 7 days):\n\n{link}\n\nIf you did not expect this, ignore it.\n")
    minutes = config.password_reset_max_age_s // 60
    return ("Reset your VoxFleet password",
            f"Someone asked to reset the password of your VoxFleet account.\n\nSet a new password here "
            f"(the link works once, for {minutes} minutes):\n\n{link}\n\nIf it was not you, ignore this "
            "message: your password stays as it is.\n")


def send_or_return_link(user: User, kind: LinkKind = "reset", *, db: Session | None = None,
                        actor: User | str | None = None, config: CloudConfig | None = None) -> str | None:
    """Mail ``user`` an invite or reset link when SMTP is configured; otherwise return the link.

    Returns None when the link was mailed, or the link for the caller to show to the administrator
    who asked (also when the mail server failed, so the person is never left without a way in).
    With ``db`` the link's making is audited (never the link itself).
    """
    config = _config(config)
    link = invite_link_for(user, config) if kind == "invite" else reset_link_for(user, config)
    delivered = "shown"
    if mail.mail_configured(config):
        tenant_name = None
        if user.tenant_id is not None and db is not None:
            tenant = PlatformScope(db).get(Tenant, user.tenant_id)
            tenant_name = tenant.name if tenant else None
        subject, body = _message(kind, link, tenant_name, config)
        try:
            mail.send_mail(config, user.email, subject, body)
            delivered = "mailed"
        except mail.MailError:
            delivered = "mail_failed"
    if db is not None:
        audit(db, _actor(actor), f"{'invite' if kind == 'invite' else 'password_reset'}.link_made",
              target=f"user:{user.id}", tenant_id=user.tenant_id, ip=_ip(), delivered=delivered)
    return None if delivered == "mailed" else link


def invite_user(scope_or_db: TenantScope | Session, tenant_id: uuid.UUID | str, email: str, role: str,
                invited_by: User | str | None, *, name: str = "",
                config: CloudConfig | None = None) -> tuple[User, str | None]:
    """Add a person to a tenant's team, with no password until they follow their invitation link.

    Returns the new user and the link to show to the inviting admin, or None for the link when it was
    mailed. Audited in the same transaction; the caller commits. Raises InviteError (with the form
    field at fault) for a bad email or role, an email already in use, or a suspended tenant.
    """
    tenant_id = tenant_id if isinstance(tenant_id, uuid.UUID) else uuid.UUID(str(tenant_id))
    if isinstance(scope_or_db, TenantScope):
        if scope_or_db.tenant_id != tenant_id:
            raise InviteError("that team belongs to another organisation", field="email")
        db = scope_or_db.db
    else:
        db = scope_or_db
    try:
        email = normalise_email(email)
    except AdminError:
        raise InviteError("Enter an email address like name@example.com.") from None
    if role not in TENANT_ROLES:
        raise InviteError("Choose owner, admin or member.", field="role")
    name = (name or "").strip()[:200]
    platform = PlatformScope(db)
    tenant = platform.get(Tenant, tenant_id)
    if tenant is None:
        raise InviteError("no such organisation")
    if tenant.status != "active":
        raise InviteError("This organisation is suspended; nobody can be invited.")
    if platform.first(User, func.lower(User.email) == email) is not None:
        raise InviteError("Somebody with this email already has an account.")
    scope = TenantScope(db, tenant_id)
    user = scope.add(User(email=email, name=name, role=role, password_hash=None))
    scope.flush()
    audit(db, _actor(invited_by), "user.invite", target=f"user:{user.id}", tenant_id=tenant_id, ip=_ip(),
          role=role)
    link = send_or_return_link(user, "invite", db=db, actor=invited_by, config=config)
    return user, link


def user_for_token(db: Session, kind: LinkKind, token: str, config: CloudConfig | None = None) -> User:
    """The person a link belongs to, or ValueError with a message for the page.

    Checks the signature, the age, that the link was not used (the password fingerprint still matches),
    and that the account may still sign in.
    """
    config = _config(config)
    secret = config.secret_key.get_secret_value()
    if kind == "invite":
        user_id, fp = security.read_invite_token(secret, token)
        used = "This invitation has already been accepted. Sign in with the password you chose."
    else:
        user_id, fp = security.read_reset_token(secret, token, max_age=config.password_reset_max_age_s)
        used = "This reset link has already been used. Ask for a new one if you still need it."
    try:
        user = PlatformScope(db).get(User, uuid.UUID(user_id))
    except ValueError:
        user = None
    if user is None:
        raise LinkError("This link is not valid: its account no longer exists.", reason="no user")
    if not security.invite_still_valid(fp, user.password_hash):
        raise LinkError(used, reason="used")
    if user.disabled:
        raise LinkError("This account is disabled. Contact your administrator.", reason="disabled")
    if user.external_subject:
        raise LinkError("This account signs in through single sign-on; it has no password here.",
                        reason="external account")
    if user.tenant_id is not None:
        tenant = PlatformScope(db).get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            raise LinkError("Your organisation's account is suspended. Contact the service operator.",
                            reason="tenant suspended")
    return user


class LinkError(ValueError):
    """A link that cannot be used; the message is for the person, ``reason`` for the audit log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def set_password(db: Session, user: User, password: str) -> None:
    """Check and set a new password; raises security.WeakPassword with a message for the field."""
    security.check_password_strength(password)
    user.password_hash = security.hash_password(password)
    db.flush()
    log.info("password set for user %s", user.id)


def find_user_for_reset(db: Session, email: str) -> User | None:
    """The account a reset request may go to (None when there is none, or it cannot use a password)."""
    platform = PlatformScope(db)
    user = platform.first(User, func.lower(User.email) == email)
    if user is None or user.disabled or user.external_subject:
        return None
    if user.tenant_id is not None:
        tenant = platform.get(Tenant, user.tenant_id)
        if tenant is None or tenant.status != "active":
            return None
    return user
