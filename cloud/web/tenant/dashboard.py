"""The tenant dashboard: the fleet at a glance (devices online, sessions, top and failed intents,
recent activity)."""

from __future__ import annotations

from flask import render_template

from cloud.db import User
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.tenant import bp
from cloud.web.tenant.common import dashboard as figures
from cloud.web.tenant.common import device_names, recent_activity


def actors(current) -> dict[str, str]:
    """``user:<id>`` -> a person's name or email, so the activity list names people, not ids."""
    return {f"user:{u.id}": (u.name or u.email) for u in current.all(User)}


@bp.get("/")
@allow(*TENANT_ADMINS)
def dashboard():
    current = scope()
    stats = figures(current)
    return render_template(
        "tenant/dashboard.html",
        stats=stats,
        # Only the latest sessions name their device: look up those few, not every device.
        device_names=device_names(current, (s.device_id for s in stats["recent_sessions"])),
        activity=recent_activity(current),
        actors=actors(current),
        ep="tenant",
    )
