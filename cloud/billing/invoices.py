"""Invoices from the built-in ledger: close a period into a draft, then finalize, pay or void.

``close_period(db, tenant_id, period)`` makes the period's draft invoice and moves the subscription
on to the next period (applying a scheduled plan change or cancellation). It is idempotent: the
invoice is unique per (tenant, period), so a second call (or a concurrent one) returns the same
invoice and changes nothing.

The invoice keeps the plan's terms as they stood at the close (``invoices.terms``, ``InvoiceTerms``):
a draft recomputed during the grace window (cloud/billing/scheduler.py) prices the meter's late usage
with those, so editing a plan changes the periods closed after the edit and never one already closed.

Lines: the plan fee (the full monthly price: no proration, see subscriptions.py), then one overage
line per meter used beyond its included units, in the plan's meter order:
``amount = max(0, used - included) x unit price``, computed exactly in Decimal and rounded once per
line to whole minor units, half up (0.5 cent -> 1 cent). The invoice total is the sum of the rounded
lines, so the lines always add up to the total. A line in another currency than the invoice's is
refused (CurrencyMismatch). A free plan with no currency invoices in XXX (ISO "no currency").

Statuses: draft -> finalized -> paid, and draft or finalized -> voided. Once finalized an invoice
and its lines are immutable (cloud/db/billing.py enforces it at flush); corrections are a void and
a new invoice, never an edit.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.billing.currency import NO_CURRENCY
from cloud.billing.errors import BillingError, CurrencyMismatch, InvoiceLocked, PeriodNotOver
from cloud.billing.meter import Usage, meter
from cloud.billing.periods import Period
from cloud.billing.plans import MeterTerms, terms
from cloud.db.base import utcnow
from cloud.db.billing import BILLING_METERS, Invoice, InvoiceLine, Plan, Subscription
from cloud.scoping import PlatformScope, TenantScope

METER_NAMES = {"sessions": "voice sessions", "stt_seconds": "STT seconds", "tts_characters": "TTS characters",
               "intents_handled": "intents handled", "active_devices": "active devices",
               "llm_tokens": "LLM tokens"}


def line_amount(quantity: Decimal, unit_price: Decimal) -> int:
    """Whole minor units, half up, from an exact product."""
    return int((quantity * unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class InvoiceTerms:
    """What an invoice is priced with: the plan as it stood when its period was closed."""

    name: str
    monthly_price: int
    currency: str | None
    meters: dict[str, MeterTerms]

    @classmethod
    def of_plan(cls, plan: Plan) -> InvoiceTerms:
        return cls(plan.name, int(plan.monthly_price), plan.currency, terms(plan))

    @classmethod
    def stored(cls, data: dict[str, Any]) -> InvoiceTerms:
        return cls(str(data["name"]), int(data["monthly_price"]), data.get("currency"),
                   {m: MeterTerms.model_validate(v) for m, v in (data.get("meters") or {}).items()})

    def to_json(self) -> dict[str, Any]:
        """The ``invoices.terms`` value: JSON only (prices as decimal text, as plans keep them)."""
        return {"name": self.name, "monthly_price": self.monthly_price, "currency": self.currency,
                "meters": {m: t.stored() for m, t in self.meters.items()}}


def invoice_terms(db: Session, invoice: Invoice) -> InvoiceTerms:
    """The terms an invoice was closed with; for one closed before they were kept (``terms`` NULL),
    the plan's current terms, which is all there is."""
    if invoice.terms:
        return InvoiceTerms.stored(invoice.terms)
    plan = PlatformScope(db).get(Plan, invoice.plan_id)
    assert plan is not None  # the foreign key keeps it
    return InvoiceTerms.of_plan(plan)


def overage_lines(plan: Plan | InvoiceTerms, usage: Usage) -> list[tuple[str, Decimal, Decimal, int]]:
    """(meter, units over, unit price, amount) for each priced meter used beyond its included units."""
    found = []
    plan_terms = plan.meters if isinstance(plan, InvoiceTerms) else terms(plan)
    for name in BILLING_METERS:
        t = plan_terms.get(name)
        if t is None or t.overage_price <= 0:
            continue
        over = max(Decimal(0), usage.quantity(name) - t.included)
        if over > 0:
            found.append((name, over, t.overage_price, line_amount(over, t.overage_price)))
    return found


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def add_line(db: Session, invoice: Invoice, kind: str, description: str, quantity: Decimal,
             unit_price: Decimal, currency: str, meter_name: str | None = None) -> InvoiceLine:
    """Append a line to a draft invoice and update its total."""
    if invoice.status != "draft":
        raise InvoiceLocked(f"invoice {invoice.id} is {invoice.status}: its lines cannot change")
    if currency != invoice.currency:
        raise CurrencyMismatch(f"a {currency} line cannot go on a {invoice.currency} invoice")
    if quantity < 0 or unit_price < 0:
        raise BillingError("quantities and prices on an invoice line cannot be negative")
    scope = TenantScope(db, invoice.tenant_id)
    position = scope.count(InvoiceLine, InvoiceLine.invoice_id == invoice.id)
    line = scope.add(InvoiceLine(invoice_id=invoice.id, position=position, kind=kind, meter=meter_name,
                                 description=description, quantity=_text(quantity),
                                 unit_price=_text(unit_price), amount=line_amount(quantity, unit_price),
                                 currency=currency))
    invoice.total = (invoice.total or 0) + line.amount
    scope.flush()
    return line


def close_period(db: Session, tenant_id: uuid.UUID, period: Period, now: datetime | None = None,
                 actor: str = "billing") -> Invoice:
    """The period's invoice, made as a draft if it does not exist yet (see the module's docstring)."""
    scope = TenantScope(db, tenant_id)
    existing = scope.first(Invoice, Invoice.period_start == period.start)
    if existing is not None:
        return existing
    if (now or utcnow()) < period.end:
        raise PeriodNotOver(f"period {period.label} ends at {period.end.isoformat()}: it cannot close yet")
    # Locked until the commit: a plan change or cancellation committed meanwhile (subscriptions.py locks
    # the same row) is either in before this close reads it or waits and then applies to the next period.
    sub = scope.scalar(scope.select(Subscription).with_for_update()
                       .execution_options(populate_existing=True))
    # Another process may have closed the period while this one waited for the lock: its invoice is it.
    existing = scope.first(Invoice, Invoice.period_start == period.start)
    if existing is not None:
        return existing
    if sub is None:
        raise BillingError("the tenant has no subscription")
    if sub.current_period_start != period.start:
        if sub.current_period_start < period.start:
            raise BillingError(f"close {Period(sub.current_period_start).label} before {period.label}")
        raise BillingError(f"the subscription was not running in {period.label}: nothing to invoice")
    if sub.status != "active":
        raise BillingError("the subscription has ended")
    plan = PlatformScope(db).get(Plan, sub.plan_id)
    assert plan is not None  # the foreign key keeps it
    usage = meter(db, tenant_id, period)
    kept = InvoiceTerms.of_plan(plan)
    currency = kept.currency or NO_CURRENCY
    try:
        with db.begin_nested():
            invoice = scope.add(Invoice(plan_id=plan.id, period_start=period.start, period_end=period.end,
                                        currency=currency, total=0, status="draft", terms=kept.to_json()))
            scope.flush()
            add_line(db, invoice, "fee", f"{kept.name} ({period.label})", Decimal(1),
                     Decimal(kept.monthly_price), currency)
            for name, over, price, _amount in overage_lines(kept, usage):
                add_line(db, invoice, "overage", f"{METER_NAMES[name]} over the included units", over, price,
                         currency, meter_name=name)
            # The subscription moves on to the next period, with any scheduled change.
            if sub.next_plan_id is not None:
                sub.plan_id, sub.next_plan_id = sub.next_plan_id, None
            sub.current_period_start = period.next().start
            if sub.cancel_at_period_end:
                sub.status, sub.ended_at = "canceled", period.end
            scope.flush()
    except IntegrityError:  # closed concurrently by another process: theirs is the invoice
        db.expire_all()
        found = scope.first(Invoice, Invoice.period_start == period.start)
        if found is None:
            raise
        return found
    audit(db, actor, "invoice.draft", target=f"invoice:{invoice.id}", tenant_id=tenant_id,
          period=period.label, total=invoice.total, currency=currency)
    return invoice


def _invoice(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice:
    invoice = TenantScope(db, tenant_id).get(Invoice, invoice_id)
    if invoice is None:
        raise BillingError(f"no invoice {invoice_id}")
    return invoice


def lines(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> list[InvoiceLine]:
    return TenantScope(db, tenant_id).all(InvoiceLine, InvoiceLine.invoice_id == invoice_id,
                                          order_by=InvoiceLine.position)


def _move(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID, to: str, allowed_from: tuple[str, ...],
          stamp: str, actor: str) -> Invoice:
    invoice = _invoice(db, tenant_id, invoice_id)
    if invoice.status == to:
        return invoice
    if invoice.status not in allowed_from:
        raise InvoiceLocked(f"invoice {invoice.id} is {invoice.status}: it cannot become {to}")
    if to == "finalized":
        total = sum(line.amount for line in lines(db, tenant_id, invoice_id))
        if total != invoice.total:  # never expected: the ledger refuses to issue what does not add up
            raise BillingError(f"invoice {invoice.id} total {invoice.total} != its lines' {total}")
    invoice.status = to
    setattr(invoice, stamp, utcnow())
    TenantScope(db, tenant_id).flush()
    audit(db, actor, f"invoice.{to}", target=f"invoice:{invoice.id}", tenant_id=tenant_id,
          total=invoice.total, currency=invoice.currency)
    return invoice


def finalize(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: str = "billing") -> Invoice:
    return _move(db, tenant_id, invoice_id, "finalized", ("draft",), "finalized_at", actor)


def mark_paid(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: str = "billing") -> Invoice:
    return _move(db, tenant_id, invoice_id, "paid", ("finalized",), "paid_at", actor)


def void(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: str = "billing") -> Invoice:
    return _move(db, tenant_id, invoice_id, "voided", ("draft", "finalized"), "voided_at", actor)


def outstanding(db: Session, tenant_id: uuid.UUID | None = None) -> dict[str, int]:
    """Finalized, unpaid totals per currency: one tenant's, or (no tenant) the whole platform's."""
    scope: TenantScope | PlatformScope = TenantScope(db, tenant_id) if tenant_id else PlatformScope(db)
    rows = scope.execute(select(Invoice.currency, func.sum(Invoice.total)).where(
        Invoice.status == "finalized").group_by(Invoice.currency)).all()
    found: dict[str, int] = defaultdict(int)
    for currency, total in rows:
        found[currency] += int(total or 0)
    return dict(found)


CSV_COLUMNS = ("position", "kind", "meter", "description", "quantity", "unit_price", "amount", "currency")


def lines_csv(db: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> str:
    """The invoice's lines as CSV; money in minor units, as stored, so a spreadsheet adds them exactly."""
    _invoice(db, tenant_id, invoice_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines(db, tenant_id, invoice_id):
        writer.writerow([line.position, line.kind, line.meter or "", line.description, line.quantity,
                         line.unit_price, line.amount, line.currency])
    return out.getvalue()
