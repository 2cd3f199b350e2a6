"""The member portal (/member/...): a read-only view of the organisation for ``tenant_member`` people
(owners and admins may open it too, to see what members see). Nothing here changes data: every route
is GET, and API keys are listed by prefix, scope and last use, never with a secret.

The pages reuse the tenant portal's queries and templates with ``ep="member"`` so both show the same
figures; the write controls there are only rendered for the tenant portal.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from cloud.db import ApiKey
from cloud.web.access import TENANT_USERS, allow, nav, scope
from cloud.web.tenant.common import dashboard as figures
from cloud.web.tenant.common import device_names
from cloud.web.tenant.keys import key_state
from cloud.web.tenant.sessions import session_list, timeline

bp = Blueprint("member", __name__, url_prefix="/member", template_folder="templates")

nav("member", "Dashboard", "member.dashboard")
nav("member", "Sessions", "member.sessions")
nav("member", "API keys", "member.keys")
nav("member", "Personal settings", "signin.account")


@bp.get("/")
@allow(*TENANT_USERS)
def dashboard():
    current = scope()
    stats = figures(current)
    # Only the latest sessions name their device: look up those few, not every device.
    named = device_names(current, (s.device_id for s in stats["recent_sessions"]))
    return render_template("member/dashboard.html", stats=stats, device_names=named, ep="member")


@bp.get("/sessions")
@allow(*TENANT_USERS)
def sessions():
    return session_list("member")


@bp.get("/sessions/<uuid:session_id>")
@allow(*TENANT_USERS)
def session(session_id):
    return timeline("member", session_id, can_end=False)


@bp.get("/keys")
@allow(*TENANT_USERS)
def keys():
    rows = scope().all(ApiKey, order_by=[ApiKey.created_at.desc(), ApiKey.id.desc()])
    return render_template("member/keys.html", keys=rows, state=key_state)
