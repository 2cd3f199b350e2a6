"""What the operator's billing page shows about Lago when Lago bills: Lago's own MRR beside the
ledger's, the plans pushed to it (and any it refused, with the reason), and the event queue (pending,
sent, rejected) so an outage or a refused plan or event is visible.

Lago being down must not take the page down: its MRR is then replaced by the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from cloud.billing.lago import readback
from cloud.billing.lago.client import LagoError, LagoGateway
from cloud.config import CloudConfig
from cloud.db.billing import Plan
from cloud.db.lago import LagoEvent, LagoPlan
from cloud.scoping import PlatformScope


@dataclass
class LagoPanel:
    mrr: dict[str, int] = field(default_factory=dict)   # currency -> minor units, Lago's latest month
    month: str | None = None
    queue: dict[str, int] = field(default_factory=dict)  # status -> events
    plans: int = 0                                        # plans with a currency (the ones Lago gets)
    plans_pushed: int = 0
    plans_refused: list[tuple[str, str]] = field(default_factory=list)   # (code, Lago's reason)
    error: str | None = None


def lago_panel(config: CloudConfig, scope: PlatformScope, currencies: list[str]) -> LagoPanel | None:
    """None when Lago is not configured (the page then shows the ledger alone)."""
    if not config.lago_configured:
        return None
    panel = LagoPanel()
    rows = scope.execute(select(LagoEvent.status, func.count()).group_by(LagoEvent.status))
    panel.queue = {status: count for status, count in rows}
    held = {row.plan_id: row for row in scope.all(LagoPlan)}
    for plan in scope.all(Plan, Plan.currency.is_not(None), order_by=Plan.code):
        panel.plans += 1
        row = held.get(plan.id)
        if row is not None and row.payload:
            panel.plans_pushed += 1
        if row is not None and row.last_error:
            panel.plans_refused.append((plan.code, row.last_error))
    gateway = LagoGateway(config.lago_api_url, config.lago_api_key.get_secret_value())
    try:
        for currency in currencies:
            months = readback.mrr(gateway, currency)
            if months:
                latest = max(months, key=lambda m: m.month)
                panel.mrr[currency] = latest.amount_cents
                panel.month = latest.month
    except LagoError as exc:
        panel.error = str(exc)
    return panel
