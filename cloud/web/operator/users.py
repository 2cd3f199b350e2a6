"""Every account on the platform; disable and enable."""

from __future__ import annotations

import uuid

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from cloud.admin import audit
from cloud.db import User
from cloud.db.session import get_db
from cloud.db.users import ROLES
from cloud.web.access import OPERATOR, allow, client_ip, current_user, platform
from cloud.web.operator import queries as q
from cloud.web.operator.blueprint import (
    actor,
    back_to,
    bp,
    page_number,
    search_box,
)


@bp.get("/users")
@allow(*OPERATOR)
def users() -> tuple[str, int]:
    search, errors = search_box()
    role = request.args.get("role", "")
    if role and role not in ROLES:
        errors["role"] = "Choose one of the listed roles."
    scope = platform()
    found = None if errors else q.users(scope, search, role, page_number())
    owners = q.tenant_names(scope, {u.tenant_id for u in found.items}) if found else {}
    return render_template("operator/users.html", page=found, search=search, role=role, roles=ROLES,
                           owners=owners, errors=errors), 400 if errors else 200


def _set_disabled(user_id: uuid.UUID, disabled: bool) -> Response:
    scope = platform()
    user = scope.get(User, user_id)
    if user is None:
        abort(404)
    back = back_to(url_for("operator.users"))
    if user.id == current_user().id:
        flash("You cannot disable your own account: ask another operator.", "error")
        return redirect(back)
    if user.disabled == disabled:
        flash(f"{user.email} is already {'disabled' if disabled else 'enabled'}.", "error")
        return redirect(back)
    user.disabled = disabled
    if disabled:  # ends every session now and for good: enabling again needs a fresh sign-in
        user.session_epoch = (user.session_epoch or 0) + 1
    audit(get_db(), actor(), "user.disabled" if disabled else "user.enabled", target=f"user:{user.id}",
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
