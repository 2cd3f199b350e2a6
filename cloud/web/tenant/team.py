"""Team: the organisation's people with their roles; invite, change a role, remove.

Rules (who may do what), decided here and shown on the page:
- owners manage everyone, including other owners, and may make owners;
- admins manage admins and members, but may not make owners nor change or remove an owner
  (an admin cannot raise anyone, themselves included, above their own role);
- nobody removes themselves here (another owner or admin does), so a slip cannot lock someone out;
- the last owner who can sign in cannot be demoted or removed: an organisation always has an owner.
A role change takes effect at once: the person's other sessions end (cloud.web.access fingerprints
the role), so a demoted admin cannot keep using an open page.

Invitations come from identity's ``invite_user`` (cloud/web/identity/invites.py), which makes the
account and the signed, expiring link: mailed when SMTP is configured, otherwise shown here to the
inviter once.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from cloud.db import User
from cloud.web.access import TENANT_ADMINS, allow, current_user, scope
from cloud.web.identity.invites import InviteError, invite_user
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import caller, owned

ROLES = {"tenant_owner": "Owner", "tenant_admin": "Admin", "tenant_member": "Member (read-only)"}


def grantable(actor: User) -> dict[str, str]:
    """The roles this person may give."""
    if actor.role == "tenant_owner":
        return ROLES
    return {k: v for k, v in ROLES.items() if k != "tenant_owner"}


def active_owners() -> int:
    return scope().count(User, User.role == "tenant_owner", User.disabled.is_(False))


def may_manage(actor: User, target: User) -> str | None:
    """Why ``actor`` may not change ``target``, or None when they may."""
    if actor.role != "tenant_owner" and target.role == "tenant_owner":
        return "Only an owner can change or remove an owner."
    return None


def _page(
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    invite_link: str | None = None,
    status: int = 200,
):
    people = scope().all(User, order_by=[User.role.desc(), User.email])
    me = current_user()
    return render_template(
        "tenant/team.html",
        people=people,
        roles=ROLES,
        grantable=grantable(me),
        me=me,
        may_manage=may_manage,
        owners=active_owners(),
        form=form or {"email": "", "name": "", "role": "tenant_member"},
        errors=errors or {},
        invite_link=invite_link,
    ), status


@bp.get("/team")
@allow(*TENANT_ADMINS)
def team():
    return _page()


@bp.post("/team/invite")
@allow(*TENANT_ADMINS)
def invite():
    me = current_user()
    form = {k: request.form.get(k, "").strip() for k in ("email", "name", "role")}
    errors: dict[str, str] = {}
    if "@" not in form["email"] or len(form["email"]) > 320:
        errors["email"] = "Give the person's email address."
    if len(form["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if form["role"] not in grantable(me):
        errors["role"] = "Choose a role you may give." if form["role"] in ROLES else "Choose a role."
    if errors:
        return _page(form, errors, status=400)
    try:
        user, link = invite_user(
            scope(), scope().tenant_id, form["email"], form["role"], me, name=form["name"]
        )
        scope().commit()
    except InviteError as exc:
        scope().db.rollback()
        return _page(form, {exc.field if exc.field in form else "email": str(exc)}, status=400)
    if link is None:
        flash(f"Invited {user.email} as {ROLES[user.role].lower()}; the invitation was emailed to them.")
        return redirect(url_for("tenant.team"))
    flash(f"Invited {user.email} as {ROLES[user.role].lower()}.")
    return _page(invite_link=link, status=201)


@bp.post("/team/<uuid:user_id>/role")
@allow(*TENANT_ADMINS)
def change_role(user_id):
    me = current_user()
    target = owned(User, user_id)
    role = request.form.get("role", "")
    refusal = may_manage(me, target)
    if refusal is None and role not in grantable(me):
        refusal = "Only an owner can make someone an owner." if role == "tenant_owner" else "Choose a role."
    if (
        refusal is None
        and target.role == "tenant_owner"
        and role != "tenant_owner"
        and not target.disabled
        and active_owners() <= 1
    ):
        refusal = (
            f"{target.email} is the last owner. Make someone else an owner first; an organisation "
            "always needs one."
        )
    if refusal:
        flash(refusal, "error")
        return _page(status=409 if "last owner" in refusal else 403)
    if role != target.role:
        caller().audit("user.role_changed", target=f"user:{target.id}", old=target.role, new=role)
        target.role = role
        scope().commit()
        flash(f"{target.email} is now {ROLES[role].lower()}.")
    return redirect(url_for("tenant.team"))


@bp.post("/team/<uuid:user_id>/remove")
@allow(*TENANT_ADMINS)
def remove_member(user_id):
    me = current_user()
    target = owned(User, user_id)
    refusal = may_manage(me, target)
    if refusal is None and target.id == me.id:
        refusal = "You cannot remove yourself; ask another owner or admin."
    if refusal is None and target.role == "tenant_owner" and not target.disabled and active_owners() <= 1:
        refusal = f"{target.email} is the last owner and cannot be removed."
    if refusal:
        flash(refusal, "error")
        return _page(status=409 if "last owner" in refusal else 403)
    email = target.email
    caller().audit("user.removed", target=f"user:{target.id}", role=target.role)
    scope().remove(target)
    scope().commit()
    flash(f"{email} no longer has access to this organisation.")
    return redirect(url_for("tenant.team"))
