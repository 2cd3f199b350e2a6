"""What the operator's billing page shows about Lago when Lago bills: Lago's own MRR beside the
ledger's, and the event queue (pending, sent, rejected) so an outage or a refused event is visible.

Lago being down must not take the page down: its MRR is then replaced by the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from cloud.billing.lago import readback
from cloud.billing.lago.client import LagoError, LagoGateway
from cloud.config import CloudConfig
from cloud.db.lago import LagoEvent
from cloud.scoping import PlatformScope


@dataclass
class LagoPanel:
    mrr: dict[str, int] = field(default_factory=dict)   # currency -> minor units, Lago's latest month
    month: str | None = None
    queue: dict[str, int] = field(default_factory=dict)  # status -> events
    error: str | None = None


def lago_panel(config: CloudConfig, scope: PlatformScope, currencies: list[str]) -> LagoPanel | None:
    """None when Lago is not configured (the page then shows the ledger alone)."""
    if not config.lago_configured:
        return None
    panel = LagoPanel()
    rows = scope.execute(select(LagoEvent.status, func.count()).group_by(LagoEvent.status))
    panel.queue = {status: count for status, count in rows}
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
