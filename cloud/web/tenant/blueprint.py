"""The tenant portal's blueprint, its menu, and who the audit log names for changes made through it.
Its own module so that the view modules can import it without importing the package that imports them."""

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
