"""The built-in billing ledger: plans (platform), subscriptions, invoices and their lines, and the
usage alerts already sent (tenant-owned). The rules live in cloud/billing/; these are the rows.

Money is integer minor units (cents) with an ISO 4217 currency beside it, never a float: a ledger
that rounds differently on two machines is not a ledger. Decimal quantities and unit prices (STT
seconds to the millisecond, fractions of a cent per unit) are kept as decimal text, exactly.

A finalized invoice is immutable: the hooks at the end refuse, at flush, any change to a finalized,
paid or voided invoice other than its next status, and any change to the lines of an invoice that is
no longer a draft. (Bulk UPDATE statements bypass mapper hooks: cloud/billing/invoices.py is the way
to change invoices.)
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from cloud.db.base import Base, CreatedMixin, IdMixin, JsonDict, TenantOwned, enum_check

# What a plan can price. "sessions" and "active_devices" are counted from the sessions and devices
# tables; the others are sums of UsageRecord columns (cloud/billing/meter.py).
BILLING_METERS = ("sessions", "stt_seconds", "tts_characters", "intents_handled", "active_devices",
                  "llm_tokens")
PLAN_STATUSES = ("active", "archived")
SUBSCRIPTION_STATUSES = ("active", "canceled")
INVOICE_STATUSES = ("draft", "finalized", "paid", "voided")
LINE_KINDS = ("fee", "overage", "adjustment")
THRESHOLDS = (80, 100)  # percent of a meter's included units


class InvoiceLocked(ValueError):
    """A finalized, paid or voided invoice (or one of its lines) was about to change."""


class Plan(IdMixin, CreatedMixin, Base):
    """A price list, owned by the platform. ``meters`` holds, per meter, the validated terms of
    cloud/billing/plans.py (MeterTerms): included units, overage price per unit (decimal text, minor
    units), soft and hard limits. A plan referenced by a subscription or invoice cannot be deleted."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint(enum_check("status", PLAN_STATUSES), name="status"),
        CheckConstraint("monthly_price >= 0", name="monthly_price"),
    )

    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # None only for a plan that charges nothing at all (no fee, no overage).
    currency: Mapped[str | None] = mapped_column(String(3))
    monthly_price: Mapped[int] = mapped_column(BigInteger, default=0)
    meters: Mapped[JsonDict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    archived_at: Mapped[datetime | None]


class Subscription(TenantOwned, CreatedMixin, Base):
    """A tenant's plan. One row per tenant. Periods are calendar months in UTC; ``next_plan_id`` is a
    plan change waiting for the next period, ``cancel_at_period_end`` a cancellation waiting for the
    end of the current one (cloud/billing/subscriptions.py)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("tenant_id"),
        CheckConstraint(enum_check("status", SUBSCRIPTION_STATUSES), name="status"),
    )

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    next_plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"),
                                                           index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_at: Mapped[datetime]
    current_period_start: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class Invoice(TenantOwned, CreatedMixin, Base):
    """One invoice per tenant and period (the unique key is what makes closing a period idempotent).

    ``terms`` is the plan as it stood when the period was closed (name, monthly price, currency and
    per-meter terms: cloud/billing/invoices.py, ``snapshot``). A draft is recomputed from the meter
    until it is finalized, and it must keep the prices it was closed with: an operator editing the plan
    meanwhile changes the periods closed after the edit, never one already closed. NULL only on rows
    closed before the column existed; those fall back to the plan row."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "period_start"),
        CheckConstraint(enum_check("status", INVOICE_STATUSES), name="status"),
        CheckConstraint("total >= 0", name="total"),
    )

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    terms: Mapped[JsonDict | None]
    finalized_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]


class InvoiceLine(TenantOwned, Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "position"),
        CheckConstraint(enum_check("kind", LINE_KINDS), name="kind"),
        CheckConstraint("amount >= 0", name="amount"),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    meter: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[str] = mapped_column(String(40))     # decimal text
    unit_price: Mapped[str] = mapped_column(String(40))   # decimal text, minor units
    amount: Mapped[int] = mapped_column(BigInteger)       # minor units, rounded (cloud/billing/invoices.py)
    currency: Mapped[str] = mapped_column(String(3))


class UsageAlert(TenantOwned, CreatedMixin, Base):
    """A usage threshold already announced: at most one per (tenant, period, meter, threshold)."""

    __tablename__ = "usage_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "period_start", "meter", "threshold"),)

    period_start: Mapped[datetime]
    meter: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    used: Mapped[str] = mapped_column(String(40))
    included: Mapped[int] = mapped_column(BigInteger)


# --- immutability of issued invoices -------------------------------------------------------------

# The changes allowed once an invoice has left draft: its status moves on, with that status's time.
_NEXT = {"finalized": {"paid", "voided"}, "paid": set(), "voided": set()}
_STATUS_TIMES = {"paid": "paid_at", "voided": "voided_at"}


def _was(target: Any, attribute: str) -> Any:
    history = sa_inspect(target).attrs[attribute].history
    if history.deleted:
        return history.deleted[0]
    return (history.unchanged or [getattr(target, attribute)])[0]


def _guard_invoice(_mapper: Mapper[Any], _connection: Connection, target: Invoice) -> None:
    before = _was(target, "status")
    if before == "draft":
        return
    state = sa_inspect(target)
    changed = {a.key for a in state.attrs if a.history.has_changes()}
    allowed = {"status", _STATUS_TIMES.get(target.status, "status")}
    if changed - allowed or (target.status != before and target.status not in _NEXT.get(before, set())):
        raise InvoiceLocked(f"invoice {target.id} is {before}: it cannot change "
                            f"({', '.join(sorted(changed))})")


def _guard_invoice_delete(_mapper: Mapper[Any], _connection: Connection, target: Invoice) -> None:
    if _was(target, "status") != "draft":
        raise InvoiceLocked(f"invoice {target.id} is {_was(target, 'status')}: void it, never delete it")


def _guard_line(_mapper: Mapper[Any], connection: Connection, target: InvoiceLine) -> None:
    status = connection.execute(select(Invoice.__table__.c.status).where(
        Invoice.__table__.c.id == target.invoice_id)).scalar()
    if status is not None and status != "draft":
        raise InvoiceLocked(f"invoice {target.invoice_id} is {status}: its lines cannot change")


if not event.contains(Invoice, "before_update", _guard_invoice):
    event.listen(Invoice, "before_update", _guard_invoice)
    event.listen(Invoice, "before_delete", _guard_invoice_delete)
    for _hook in ("before_insert", "before_update", "before_delete"):
        event.listen(InvoiceLine, _hook, _guard_line)
