"""The tenant portal (/tenant/...): what a tenant's owners and admins run their fleet with.

One blueprint, ``bp``, with its views split by topic (devices, sessions, projects, keys, usage, team,
settings). Views do no data work of their own where the REST API already does it: they call the same
plain functions the API routes call (cloud/api/*.py), which read the caller's TenantScope from
``flask.g.scope`` (set by cloud.web.access for a signed-in tenant user) and audit as ``g.actor``
(set below to ``user:<id>``). So a rule such as "a project with devices cannot be deleted" lives in
one place and the portal and the API cannot drift apart.
"""

from __future__ import annotations

from flask import Blueprint, g

from cloud.web.access import current_user, nav
from cloud.web.tenant.common import register_filters

bp = Blueprint("tenant", __name__, url_prefix="/tenant", template_folder="../templates")


@bp.before_request
def _actor() -> None:
    """Who the audit log names for changes made through these pages."""
    user = current_user()
    if user is not None:
        g.actor = f"user:{user.id}"


register_filters(bp)

for _label, _endpoint in (
    ("Dashboard", "tenant.dashboard"),
    ("Devices", "tenant.devices"),
    ("Sessions", "tenant.sessions"),
    ("Projects", "tenant.projects"),
    ("API keys", "tenant.keys"),
    ("Usage", "tenant.usage"),
    ("Billing", "tenant.billing"),
    ("Team", "tenant.team"),
    ("Settings", "tenant.settings"),
):
    nav("tenant", _label, _endpoint)

# The views attach themselves to ``bp`` on import.
from cloud.web.tenant import (  # noqa: E402, F401
    billing,
    dashboard,
    devices,
    keys,
    projects,
    sessions,
    settings,
    team,
    usage,
)
