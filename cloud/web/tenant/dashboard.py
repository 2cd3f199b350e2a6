"""The tenant dashboard: the fleet at a glance (devices online, sessions, top and failed intents,
recent activity)."""

from __future__ import annotations

from flask import render_template

from cloud.billing import enforce, subscriptions
from cloud.billing.limits import limit_state
from cloud.billing.periods import Period
from cloud.db import User
from cloud.db.session import get_db
from cloud.web import billing_common
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import dashboard as figures
from cloud.web.tenant.common import device_names, recent_activity


def actors(current) -> dict[str, str]:
    """``user:<id>`` -> a person's name or email, so the activity list names people, not ids."""
    return {f"user:{u.id}": (u.name or u.email) for u in current.all(User)}


def plan_usage(tenant_id) -> dict:
    """The current period's usage against the plan, when the tenant has one (bars on the dashboard,
    so a tenant sees 80 % coming before the invoice does), and the meters at a hard limit."""
    db = get_db()
    sub = subscriptions.current(db, tenant_id)
    if sub is None or sub.status != "active":
        return {"usage_bars": None, "limit_blocked": enforce.blocked_meters(db, tenant_id)}
    state = limit_state(db, tenant_id, Period(sub.current_period_start))
    return {"usage_bars": billing_common.bars(state), "limit_blocked": enforce.blocked_meters(db, tenant_id)}


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
        **plan_usage(current.tenant_id),
    )
