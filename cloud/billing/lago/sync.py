"""One Lago sync pass: metrics, plans, then per tenant its customer and subscription, its queue, its batches.

The contract with the billing scheduler (cloud/billing/scheduler.py calls it once per pass)::

    sync_once(*, config=None, sessions, now=None, gateway=None, batch_size=100) -> SyncReport

- ``sessions``: a callable returning a new SQLAlchemy session (the app's sessionmaker).
- ``config``: a CloudConfig with ``lago_api_url`` and ``lago_api_key``; or give ``gateway`` instead.
- ``now``: the moment the backoff is measured against (default: the current time).
- ``grace``: how long an ended subscription's late usage may still arrive before it is terminated in
  Lago (default: ``config.invoice_grace_hours``, the ledger's own grace window, else 72 h).

It never raises for Lago's failures: the report says what happened (``deferred`` when Lago was
unavailable, ``error`` when the API key was refused, ``failures`` per tenant for refused requests),
and whatever was not accepted stays queued. It may be called again at any time, from any process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cloud.billing.lago.client import (
    MAX_BATCH,
    LagoAuthError,
    LagoError,
    LagoGateway,
    LagoRefused,
    LagoUnavailable,
)
from cloud.billing.lago.customers import sync_customer, tenants_to_sync, terminate_ended
from cloud.billing.lago.metrics import METRICS
from cloud.billing.lago.outbox import drain, enqueue, pending_count
from cloud.billing.lago.plans import sync_plans
from cloud.db.base import utcnow

log = logging.getLogger(__name__)

DEFAULT_GRACE_HOURS = 72   # CloudConfig.invoice_grace_hours' default: how long late usage may arrive


@dataclass
class SyncReport:
    metrics_created: list[str] = field(default_factory=list)
    plans_pushed: list[str] = field(default_factory=list)
    customer_calls: int = 0
    queued: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    pending: int = 0
    deferred: str | None = None   # Lago unavailable: the rest waits for the next pass
    error: str | None = None      # the API key was refused: nothing can be synced
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.deferred or self.error or self.failures or self.rejected)

    def __str__(self) -> str:
        text = (f"{self.queued} queued, {self.sent} sent, {self.duplicates} already in Lago, "
                f"{self.rejected} rejected, {self.pending} pending")
        if self.metrics_created:
            text += f"; metrics created: {', '.join(self.metrics_created)}"
        if self.plans_pushed:
            text += f"; plans pushed: {', '.join(self.plans_pushed)}"
        if self.deferred:
            text += f"; deferred: {self.deferred}"
        if self.error:
            text += f"; error: {self.error}"
        if self.failures:
            text += f"; {len(self.failures)} tenant(s) failed"
        return text


def gateway_for(config: Any) -> LagoGateway:
    if not getattr(config, "lago_configured", False):
        raise LagoError("Lago is not configured: set lago_api_url and lago_api_key")
    return LagoGateway(config.lago_api_url, config.lago_api_key.get_secret_value())


def ensure_metrics(gateway: LagoGateway, ids: dict[str, str] | None = None) -> list[str]:
    """Create the billable metrics Lago lacks (each once: existing codes are left as they are).

    ``ids``, when given, is filled with Lago's id of every metric, by code (the plans' charges need them)."""
    have = gateway.metric_ids()
    made = []
    for metric in METRICS:
        if metric.code not in have:
            have[metric.code] = gateway.create_metric(metric.code, metric.name, metric.aggregation_type,
                                                      metric.field_name, metric.description)
            made.append(metric.code)
    if ids is not None:
        ids.update(have)
    return made


def sync_once(*, config: Any = None, sessions: Callable[[], Session], now: datetime | None = None,
              gateway: LagoGateway | None = None, batch_size: int = MAX_BATCH,
              grace: timedelta | None = None) -> SyncReport:
    """One pass; see the module docstring for the contract."""
    now = now or utcnow()
    if grace is None:
        grace = timedelta(hours=getattr(config, "invoice_grace_hours", DEFAULT_GRACE_HOURS))
    report = SyncReport()
    if gateway is None:
        try:
            gateway = gateway_for(config)
        except LagoError as exc:
            report.error = str(exc)
            return report
    try:
        metric_ids: dict[str, str] = {}
        report.metrics_created = ensure_metrics(gateway, metric_ids)
        with sessions() as db:
            plans = sync_plans(db, gateway, metric_ids, now)
            report.plans_pushed, report.failures = plans.pushed, plans.failures
            tenants = tenants_to_sync(db)
            db.rollback()
        for tenant_id in tenants:
            with sessions() as db:
                try:
                    synced = sync_customer(db, gateway, tenant_id, now)
                except LagoUnavailable:
                    raise
                except LagoAuthError:
                    raise
                except LagoError as exc:
                    report.failures.append(f"tenant {tenant_id}: {exc}")
                    log.error("Lago sync of tenant %s failed: %s", tenant_id, exc)
                    report.pending += pending_count(db, tenant_id)
                    continue
                report.customer_calls += synced.calls
                for window in synced.windows:
                    report.queued += enqueue(db, tenant_id, window.external_id, window.since, window.until)
                drained = drain(db, gateway, tenant_id, now, batch_size)
                report.sent += drained.sent
                report.duplicates += drained.duplicates
                report.rejected += drained.rejected
                report.pending += pending_count(db, tenant_id)
                if drained.deferred:
                    report.deferred = drained.deferred
                    return report
                try:
                    report.customer_calls += terminate_ended(db, gateway, tenant_id, now, grace)
                except LagoRefused as exc:
                    report.failures.append(f"tenant {tenant_id}: {exc}")
                    log.error("Lago refused to terminate a subscription of tenant %s: %s", tenant_id, exc)
    except LagoUnavailable as exc:
        report.deferred = str(exc)
        log.warning("Lago sync deferred: %s", exc)
    except LagoError as exc:   # the key refused, or a billable metric refused: nothing else can go
        report.error = str(exc)
        log.error("Lago sync stopped: %s", exc)
    return report
