"""The billing scheduler: the ledger's periodic work, one pass every ``billing_interval_s`` seconds.

A pass runs four steps, in this order, each made of small units that commit on their own:

1. ``check_usage``   usage thresholds (80 %/100 %) for tenants with usage stored since the last pass
                     (all subscribed tenants on the first pass after a start), current period and the
                     previous one while its invoice is still a draft. Announced once per (tenant,
                     period, meter, threshold) across processes: usage_alerts is unique on those four.
2. ``close_due``     every subscription whose period has ended gets that period's draft invoice
                     (invoices.close_period), which also applies a scheduled plan change or
                     cancellation; a subscription several periods behind is closed one period at a time.
3. ``settle_drafts`` every draft is recomputed from the meter (late usage is included during the grace
                     window); once ``invoice_grace_hours`` have passed since its period ended it is
                     finalized, after which it never changes (late usage stays in the meter only).
4. ``sync_lago``     the hook to the Lago syncer (cloud/billing/lago/), only when Lago is configured.

Why it is safe to stop at any point and to run in several processes at once: each unit is idempotent
and decided from the database, never from memory. A period is closed once (the invoice is unique per
tenant and period, and the subscription moves on in the same commit); a draft is locked while it is
recomputed and finalized; an alert exists once. The one thing kept in memory, the time of the last
usage check, is only an optimisation: a restarted scheduler checks every subscribed tenant.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.billing.invoices import (
    METER_NAMES,
    add_line,
    close_period,
    finalize,
    invoice_terms,
    lines,
    overage_lines,
)
from cloud.billing.limits import check_thresholds
from cloud.billing.meter import meter
from cloud.billing.periods import Period
from cloud.db.base import utcnow
from cloud.db.billing import Invoice, Subscription
from cloud.db.usage import UsageRecord
from cloud.db.voice_sessions import VoiceSession
from cloud.scoping import PlatformScope, TenantScope

log = logging.getLogger(__name__)

# Usage rows are stamped when received and committed a moment later, by another process whose clock
# may differ a little: the next check looks this far behind the previous one so that none is missed.
OVERLAP = timedelta(minutes=5)

Sessions = Callable[[], Session]
Done = list[tuple[uuid.UUID, str]]   # (tenant, period label) pairs a step handled


@dataclass
class PassReport:
    """What one pass did, for logs and the CLI."""

    checked: list[uuid.UUID] = field(default_factory=list)       # tenants whose thresholds were checked
    closed: list[tuple[uuid.UUID, str]] = field(default_factory=list)      # (tenant, period) drafts made
    recomputed: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # drafts whose lines changed
    finalized: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    lago: str | None = None
    failures: int = 0


# --- 1. thresholds --------------------------------------------------------------------------------

def tenants_to_check(db: Session, since: datetime | None) -> list[uuid.UUID]:
    """Tenants with an active subscription and, if ``since`` is given, usage or a session since then."""
    platform = PlatformScope(db)
    subscribed = select(Subscription.tenant_id).where(Subscription.status == "active")
    if since is None:
        return sorted(set(platform.scalars(subscribed)))
    recent = union(select(UsageRecord.tenant_id).where(UsageRecord.received_at >= since),
                   select(VoiceSession.tenant_id).where(VoiceSession.started_at >= since)).subquery()
    return sorted(set(platform.scalars(subscribed.where(Subscription.tenant_id.in_(select(recent.c[0]))))))


def _open_periods(db: Session, tenant_id: uuid.UUID, now: datetime) -> list[Period]:
    """The current period, and the previous one while its invoice is not issued yet."""
    current, previous = Period.of(now), Period.of(now).previous()
    issued = TenantScope(db, tenant_id).first(Invoice, Invoice.period_start == previous.start,
                                              Invoice.status != "draft")
    return [current] if issued is not None else [previous, current]


def check_usage(sessions: Sessions, since: datetime | None, now: datetime) -> tuple[list[uuid.UUID], int]:
    """Step 1: announce newly reached thresholds. Returns the tenants checked and how many failed."""
    with sessions() as db:
        tenants = tenants_to_check(db, since)
    failures = 0
    for tenant_id in tenants:
        with sessions() as db:
            try:
                for period in _open_periods(db, tenant_id, now):
                    check_thresholds(db, tenant_id, period, actor="billing-scheduler")
                db.commit()
            except Exception:  # one tenant's problem must not stop the others' billing
                db.rollback()
                failures += 1
                log.exception("usage thresholds of tenant %s failed; retried next pass", tenant_id)
    return tenants, failures


# --- 2. closing periods ---------------------------------------------------------------------------

def _due(db: Session, now: datetime) -> list[uuid.UUID]:
    """Tenants whose active subscription's current period ended at or before ``now``, oldest first."""
    return list(PlatformScope(db).scalars(
        select(Subscription.tenant_id).where(Subscription.status == "active",
                                             Subscription.current_period_start < Period.of(now).start)
        .order_by(Subscription.current_period_start, Subscription.tenant_id)))


def _still_due(db: Session, tenant_id: uuid.UUID, now: datetime) -> Subscription | None:
    """The tenant's subscription if it still has an ended period to close (another scheduler may have
    closed it, or an operator cancelled it, since the list was read)."""
    sub = TenantScope(db, tenant_id).first(Subscription)
    if sub is None or sub.status != "active" or sub.current_period_start >= Period.of(now).start:
        return None
    return sub


def close_due(sessions: Sessions, now: datetime, limit: int | None = None) -> tuple[Done, int]:
    """Step 2: close every ended period into a draft, one (tenant, period) per transaction, until none
    is due (or ``limit`` were closed). Returns the closed periods and how many tenants failed.

    The due tenants are read once; each is then closed one period at a time, oldest first, until it is
    up to date, reading only its own subscription again: at the start of a month every subscription is
    due, and listing them all again after each close would make the pass quadratic in tenants."""
    closed: list[tuple[uuid.UUID, str]] = []
    failures = 0
    with sessions() as db:
        due = _due(db, now)
    for tenant_id in due:
        if limit is not None and len(closed) >= limit:
            break
        last: str | None = None
        while limit is None or len(closed) < limit:
            with sessions() as db:
                sub = _still_due(db, tenant_id, now)
                if sub is None:
                    break
                period = Period(sub.current_period_start)
                if period.label == last:
                    # Invoiced already, yet the subscription did not move on (e.g. re-subscribed within an
                    # invoiced period): an operator has to look; going round again would never end.
                    log.error("tenant %s: %s is invoiced but its subscription is still in it; skipped",
                              tenant_id, period.label)
                    failures += 1
                    break
                try:
                    close_period(db, tenant_id, period, now=now, actor="billing-scheduler")
                    db.commit()
                    closed.append((tenant_id, period.label))
                    last = period.label
                except Exception:
                    db.rollback()
                    failures += 1
                    log.exception("closing %s for tenant %s failed; retried next pass", period.label,
                                  tenant_id)
                    break
    return closed, failures


# --- 3. drafts: recompute, then finalize after the grace period --------------------------------------

def _wanted_lines(db: Session, invoice: Invoice) -> list[tuple[str, str | None, str, Decimal, Decimal]]:
    """(kind, meter, description, quantity, unit price) the draft should have from today's meter.

    Quantities come from the meter as it is now (late usage counts during the grace window); the
    prices, included units and fee from the terms kept on the invoice when its period closed, never
    the plan's current ones: a plan edited after the close must not re-price an invoice it closed."""
    kept = invoice_terms(db, invoice)
    period = Period(invoice.period_start)
    wanted: list[tuple[str, str | None, str, Decimal, Decimal]] = [
        ("fee", None, f"{kept.name} ({period.label})", Decimal(1), Decimal(kept.monthly_price))]
    for name, over, price, _amount in overage_lines(kept, meter(db, invoice.tenant_id, period)):
        wanted.append(("overage", name, f"{METER_NAMES[name]} over the included units", over, price))
    return wanted


def recompute_draft(db: Session, invoice: Invoice, actor: str = "billing-scheduler") -> bool:
    """Rewrite a draft's lines from the meter as it is now; True when anything changed. The caller
    holds the invoice's row lock (see ``settle_drafts``) so two schedulers never interleave here."""
    scope = TenantScope(db, invoice.tenant_id)
    current = lines(db, invoice.tenant_id, invoice.id)
    wanted = _wanted_lines(db, invoice)

    def same(line: Any, want: tuple[str, str | None, str, Decimal, Decimal]) -> bool:
        kind, meter_name, description, quantity, price = want
        return ((line.kind, line.meter, line.description) == (kind, meter_name, description)
                and Decimal(line.quantity) == quantity and Decimal(line.unit_price) == price)

    if len(current) == len(wanted) and all(same(li, w) for li, w in zip(current, wanted, strict=True)):
        return False
    before = invoice.total
    for line in current:
        scope.remove(line)
    invoice.total = 0
    scope.flush()
    for kind, meter_name, description, quantity, price in wanted:
        add_line(db, invoice, kind, description, quantity, price, invoice.currency, meter_name=meter_name)
    audit(db, actor, "invoice.recompute", target=f"invoice:{invoice.id}", tenant_id=invoice.tenant_id,
          period=Period(invoice.period_start).label, total_before=before, total=invoice.total)
    return True


def settle_drafts(sessions: Sessions, now: datetime, grace: timedelta,
                  limit: int | None = None) -> tuple[Done, Done, int]:
    """Step 3: recompute every draft; finalize those whose period ended ``grace`` ago or more.
    Returns (recomputed, finalized, failures)."""
    with sessions() as db:
        drafts = [(i.tenant_id, i.id) for i in PlatformScope(db).all(
            Invoice, Invoice.status == "draft", order_by=[Invoice.period_start, Invoice.tenant_id])]
    recomputed: list[tuple[uuid.UUID, str]] = []
    finalized: list[tuple[uuid.UUID, str]] = []
    failures = 0
    for tenant_id, invoice_id in drafts[:limit]:
        with sessions() as db:
            try:
                scope = TenantScope(db, tenant_id)
                invoice = scope.execute(select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                                        .execution_options(populate_existing=True)).scalar_one_or_none()
                if invoice is None or invoice.status != "draft":
                    continue  # finalized or voided meanwhile (another scheduler, an operator)
                label = Period(invoice.period_start).label
                if recompute_draft(db, invoice):
                    recomputed.append((tenant_id, label))
                if invoice.period_end + grace <= now:
                    finalize(db, tenant_id, invoice.id, actor="billing-scheduler")
                    finalized.append((tenant_id, label))
                db.commit()
            except Exception:
                db.rollback()
                failures += 1
                log.exception("settling invoice %s of tenant %s failed; retried next pass",
                              invoice_id, tenant_id)
    return recomputed, finalized, failures


# --- 4. Lago --------------------------------------------------------------------------------------

def lago_configured(config: Any) -> bool:
    """Whether this cloud bills through Lago as well (CloudConfig.lago_configured: URL and key set)."""
    return bool(getattr(config, "lago_configured", False))


def sync_lago(config: Any, sessions: Sessions, now: datetime) -> str | None:
    """Step 4, the hook to the Lago syncer (cloud/billing/lago/sync.py, ``sync_once``): customers,
    subscriptions and queued usage events pushed to Lago once per pass. None when Lago is not configured.
    Lago being down is not a failure of the pass: what was not accepted stays queued for the next one
    (the returned text says so). Imported here so the ledger runs without the Lago client installed."""
    if config is None or not lago_configured(config):
        return None
    from cloud.billing.lago import sync_once

    report = sync_once(config=config, sessions=sessions, now=now)
    if not getattr(report, "ok", True):
        log.warning("Lago sync incomplete: %s", report)
    return str(report)


# --- the pass and its thread ------------------------------------------------------------------------

class BillingScheduler:
    """Runs passes; ``start`` puts them on a daemon thread every ``interval`` seconds until ``stop``."""

    def __init__(self, sessions: Sessions, *, grace: timedelta = timedelta(hours=72), interval: float = 60,
                 config: Any = None) -> None:
        self.sessions, self.grace, self.interval, self.config = sessions, grace, interval, config
        self.since: datetime | None = None   # start of the last pass whose usage check succeeded
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="voxfleet-billing", daemon=True)

    def run_once(self, now: datetime | None = None) -> PassReport:
        """One pass of the four steps (see the module's docstring)."""
        started = now or utcnow()
        report = PassReport()
        report.checked, failed = check_usage(self.sessions, self.since - OVERLAP if self.since else None,
                                             started)
        if not failed:
            self.since = started
        report.closed, closing_failed = close_due(self.sessions, started)
        report.recomputed, report.finalized, settling_failed = settle_drafts(self.sessions, started,
                                                                             self.grace)
        report.failures = failed + closing_failed + settling_failed
        try:
            report.lago = sync_lago(self.config, self.sessions, started)
        except Exception:
            report.failures += 1
            log.exception("Lago sync failed; retried next pass")
        return report

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.run_once()
                if report.closed or report.finalized:
                    log.info("billing: %d period(s) closed, %d invoice(s) finalized",
                             len(report.closed), len(report.finalized))
            except Exception:  # a database hiccup must not end billing for good
                log.exception("billing pass failed; retrying")
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> BillingScheduler:
        self.thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


def scheduler_for(config: Any) -> BillingScheduler:
    """A scheduler on its own engine, as the app's role (so row-level security applies)."""
    from cloud.db.session import make_engine
    from cloud.scoping import session_factory

    engine = make_engine(config.database_url, app_role=config.database_role or None)
    return BillingScheduler(session_factory(engine), grace=timedelta(hours=config.invoice_grace_hours),
                            interval=config.billing_interval_s, config=config)


def start_billing_thread(config: Any) -> BillingScheduler:
    """What ``voxfleet cloud serve`` runs when ``billing_in_serve`` is on."""
    return scheduler_for(config).start()
