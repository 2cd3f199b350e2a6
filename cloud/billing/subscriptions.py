"""Subscriptions: which plan a tenant is on, and when that changes.

Rules (no proration anywhere, so every invoice is plan fee + overage and nothing else):

- Periods are calendar months in UTC. A subscription started mid-month pays that month's full fee.
- A plan change takes effect at the start of the next period: it is stored as ``next_plan_id`` and
  applied when the current period is closed (cloud/billing/invoices.py, ``close_period``). The
  period being used is invoiced on the plan it started on; changing again before then replaces the
  scheduled change, and choosing the current plan cancels it.
- Cancellation takes effect at the end of the current period (that period is still invoiced);
  until then it can be undone with ``resume``.
- Between a period's end and the scheduler closing it (normally a minute or so), plan changes,
  cancellations and resumptions are refused (``PeriodClosing``): the subscription still points at the
  ended period, so a change made then would be applied by that close, a month early. The row is locked
  while it changes and while it closes, so a change is either in before the close reads it or waits.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.billing.errors import BillingError
from cloud.billing.periods import Period
from cloud.db.base import utcnow
from cloud.db.billing import Plan, Subscription
from cloud.scoping import PlatformScope, TenantScope


def current(db: Session, tenant_id: uuid.UUID) -> Subscription | None:
    return TenantScope(db, tenant_id).first(Subscription)


def _offered(db: Session, plan_id: uuid.UUID) -> Plan:
    plan = PlatformScope(db).get(Plan, plan_id)
    if plan is None:
        raise BillingError(f"no plan {plan_id}")
    if plan.status != "active":
        raise BillingError(f"plan {plan.code} is archived: it takes no new subscribers")
    return plan


def subscribe(db: Session, tenant_id: uuid.UUID, plan_id: uuid.UUID, at: datetime | None = None,
              actor: str = "operator") -> Subscription:
    """Put a tenant without an active subscription on a plan, from the period containing ``at``."""
    plan = _offered(db, plan_id)
    at = at or utcnow()
    scope = TenantScope(db, tenant_id)
    existing = scope.first(Subscription)
    if existing is not None and existing.status == "active":
        raise BillingError("the tenant already has a subscription: change its plan instead")
    if existing is not None:  # a cancelled subscription starts again
        scope.remove(existing)
        scope.flush()
    sub = scope.add(Subscription(plan_id=plan.id, status="active", started_at=at,
                                 current_period_start=Period.of(at).start, cancel_at_period_end=False))
    scope.flush()
    audit(db, actor, "subscription.create", target=f"subscription:{sub.id}", tenant_id=tenant_id,
          plan=plan.code)
    return sub


class PeriodClosing(BillingError):
    """The subscription's period has ended but is not closed yet: a change now would apply to it."""


def _active(db: Session, tenant_id: uuid.UUID, now: datetime | None = None) -> Subscription:
    """The tenant's active subscription, row-locked until the commit (invoices.close_period takes the
    same lock), and refused while its ended period waits to be closed (see the module's docstring)."""
    scope = TenantScope(db, tenant_id)
    sub = scope.scalar(scope.select(Subscription).with_for_update()
                       .execution_options(populate_existing=True))
    if sub is None or sub.status != "active":
        raise BillingError("the tenant has no active subscription")
    period, today = Period(sub.current_period_start), Period.of(now or utcnow())
    if period < today:
        raise PeriodClosing(f"the period {period.label} has ended and is being invoiced; plan changes and "
                            "cancellations can be made again in a few minutes, once it is closed")
    return sub


def change_plan(db: Session, tenant_id: uuid.UUID, plan_id: uuid.UUID,
                actor: str = "operator", now: datetime | None = None) -> Subscription:
    """Schedule a plan change for the start of the next period (PeriodClosing while the current
    period has ended but is not closed yet)."""
    sub = _active(db, tenant_id, now)
    plan = _offered(db, plan_id)
    sub.next_plan_id = None if plan.id == sub.plan_id else plan.id
    TenantScope(db, tenant_id).flush()
    audit(db, actor, "subscription.change_plan", target=f"subscription:{sub.id}", tenant_id=tenant_id,
          plan=plan.code, effective=Period(sub.current_period_start).next().label)
    return sub


def cancel(db: Session, tenant_id: uuid.UUID, actor: str = "operator",
           now: datetime | None = None) -> Subscription:
    """Cancel at the end of the current period (which is still invoiced); PeriodClosing while that
    period has ended but is not closed yet."""
    sub = _active(db, tenant_id, now)
    sub.cancel_at_period_end, sub.canceled_at = True, utcnow()
    TenantScope(db, tenant_id).flush()
    audit(db, actor, "subscription.cancel", target=f"subscription:{sub.id}", tenant_id=tenant_id,
          effective=Period(sub.current_period_start).end.isoformat())
    return sub


def resume(db: Session, tenant_id: uuid.UUID, actor: str = "operator",
           now: datetime | None = None) -> Subscription:
    """Undo a cancellation that has not taken effect yet (once its period has ended it has, even before
    the close: PeriodClosing)."""
    sub = _active(db, tenant_id, now)
    sub.cancel_at_period_end, sub.canceled_at = False, None
    TenantScope(db, tenant_id).flush()
    audit(db, actor, "subscription.resume", target=f"subscription:{sub.id}", tenant_id=tenant_id)
    return sub
