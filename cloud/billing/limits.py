"""Usage against the plan: thresholds, their one-time announcements, and the hard limit.

Per meter with included units: at 80 % and at 100 % of the included units the tenant is told once
per (tenant, period, meter, threshold): a ``usage.threshold`` webhook (its delivery key is a uuid5
of those four, so a second evaluation enqueues nothing even without the usage_alerts row) and an
audit entry. The usage_alerts row, unique on the same four, is what makes it once across processes.

The dashboard's colours follow the same thresholds: green below 80 %, amber from 80 %, red from
100 %. A soft limit only warns. A hard limit (units, per meter) is what a ``LimitState`` reports
as ``blocked``: the intended effect, for the API and ingest to apply later, is to refuse cloud
features to NEW voice sessions (LLM answers, cloud STT/TTS) until the next period or a plan change.
It never drops, refuses or delays billing data: usage that arrives above a limit is stored and
metered like any other (a device that was mid-session finishes it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.billing.invoices import invoice_terms
from cloud.billing.meter import Usage, meter
from cloud.billing.periods import Period
from cloud.billing.plans import MeterTerms, terms
from cloud.db.billing import THRESHOLDS, Invoice, Plan, Subscription, UsageAlert
from cloud.scoping import PlatformScope, TenantScope
from cloud.webhooks.enqueue import enqueue

ALERT_NAMESPACE = uuid.UUID("6d1f4a52-3c3e-4b8e-9a51-6a1f0b6e2c10")


@dataclass(frozen=True)
class MeterState:
    meter: str
    used: Decimal
    included: int
    soft_limit: int | None
    hard_limit: int | None

    @property
    def percent(self) -> Decimal | None:
        """Share of the included units used; None when the plan includes none."""
        return None if self.included <= 0 else self.used * 100 / self.included

    @property
    def thresholds_reached(self) -> tuple[int, ...]:
        if self.included <= 0:
            return ()
        return tuple(t for t in THRESHOLDS if self.used * 100 >= t * self.included)

    @property
    def colour(self) -> str:
        reached = self.thresholds_reached
        return "red" if 100 in reached else "amber" if 80 in reached else "green"

    @property
    def soft_reached(self) -> bool:
        return self.soft_limit is not None and self.used >= self.soft_limit

    @property
    def hard_reached(self) -> bool:
        return self.hard_limit is not None and self.used >= self.hard_limit


@dataclass(frozen=True)
class LimitState:
    """What the API and ingest consult: per-meter usage against the plan, and whether the hard limit
    blocks cloud features for new sessions (see the module's docstring for what it never blocks)."""

    tenant_id: uuid.UUID
    period: Period
    meters: dict[str, MeterState]

    @property
    def blocked(self) -> bool:
        return any(m.hard_reached for m in self.meters.values())

    @property
    def blocked_meters(self) -> list[str]:
        return sorted(m.meter for m in self.meters.values() if m.hard_reached)


def delivery_key(tenant_id: uuid.UUID, period: Period, meter_name: str, threshold: int) -> uuid.UUID:
    return uuid.uuid5(ALERT_NAMESPACE, f"usage.threshold:{tenant_id}:{period.label}:{meter_name}:{threshold}")


def _period_terms(db: Session, tenant_id: uuid.UUID, period: Period) -> dict[str, MeterTerms] | None:
    """The per-meter terms the tenant was on in ``period``; None when it had no plan then.

    A closed period is judged by the terms its invoice kept at the close (cloud/billing/invoices.py,
    ``invoice_terms``), not by the subscription's plan: the close applies a scheduled plan change, so
    during the grace window the subscription already points at the NEXT period's plan, and a downgrade
    must not announce thresholds for last month that its own plan never reached (nor an edit of the plan
    re-judge it). A period before the subscription's current one without an invoice was not subscribed.
    A period after it (the current one has ended but is not closed yet) is on what the close will apply:
    the scheduled plan, or nothing once a cancellation takes effect."""
    invoice = TenantScope(db, tenant_id).first(Invoice, Invoice.period_start == period.start)
    if invoice is not None:
        return invoice_terms(db, invoice).meters
    sub = TenantScope(db, tenant_id).first(Subscription)
    if sub is None or sub.status != "active" or period.start < sub.current_period_start:
        return None
    plan_id = sub.plan_id
    if period.start > sub.current_period_start:
        if sub.cancel_at_period_end:
            return None
        plan_id = sub.next_plan_id or sub.plan_id
    plan = PlatformScope(db).get(Plan, plan_id)
    assert plan is not None  # the foreign key keeps it
    return terms(plan)


def limit_state(db: Session, tenant_id: uuid.UUID, period: Period, usage: Usage | None = None) -> LimitState:
    """Usage against the terms the tenant is on in ``period`` (``_period_terms``); none: no limits."""
    period_terms = _period_terms(db, tenant_id, period)
    if period_terms is None:
        return LimitState(tenant_id, period, {})
    usage = usage or meter(db, tenant_id, period)
    return LimitState(tenant_id, period, {
        name: MeterState(name, usage.quantity(name), t.included, t.soft_limit, t.hard_limit)
        for name, t in period_terms.items()})


def check_thresholds(db: Session, tenant_id: uuid.UUID, period: Period, actor: str = "billing") -> LimitState:
    """Evaluate the limits and announce each newly reached threshold once (webhook + audit entry),
    in the caller's transaction. Safe to run as often as wanted, from several processes."""
    state = limit_state(db, tenant_id, period)
    scope = TenantScope(db, tenant_id)
    for m in state.meters.values():
        for threshold in m.thresholds_reached:
            if scope.first(UsageAlert, UsageAlert.period_start == period.start, UsageAlert.meter == m.meter,
                           UsageAlert.threshold == threshold) is not None:
                continue
            try:
                with db.begin_nested():
                    scope.add(UsageAlert(period_start=period.start, meter=m.meter, threshold=threshold,
                                         used=str(m.used), included=m.included))
                    scope.flush()
            except IntegrityError:  # another process announced it first
                continue
            payload = {"tenant_id": str(tenant_id), "period": period.label, "meter": m.meter,
                       "threshold": threshold, "used": str(m.used), "included": m.included,
                       "hard_limit": m.hard_limit, "blocked": m.hard_reached}
            enqueue(scope, "usage.threshold", payload, delivery_key(tenant_id, period, m.meter, threshold))
            audit(db, actor, "usage.threshold", target=f"meter:{m.meter}", tenant_id=tenant_id,
                  period=period.label, threshold=threshold, used=str(m.used), included=m.included)
    return state
