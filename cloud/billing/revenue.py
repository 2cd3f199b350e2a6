"""Revenue for the operator: MRR and ARR from plan prices, usage revenue from invoices, a trend.

MRR follows Lago's definition: the recurring fee of every active subscription, normalised to one
month, summed per currency (never converted: the ledger keeps no exchange rates). Plans here are
priced per month, so the normalisation factor is 1; a subscription cancelled at period end counts
until its period ends (it is still active and still invoiced). Overage is not recurring: it is
usage revenue, reported separately from the invoices that carried it. ARR = 12 x MRR.

The trend reads issued invoices only (finalized or paid; drafts are not revenue yet, voided ones
never are), per period and currency: subscription revenue (fee lines) and usage revenue (overage
lines), for the 12 periods ending with the one given.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.billing.periods import Period
from cloud.db.billing import Invoice, InvoiceLine, Plan, Subscription
from cloud.scoping import PlatformScope

ISSUED = ("finalized", "paid")


def mrr(db: Session) -> dict[str, int]:
    """Monthly recurring revenue per currency, in minor units."""
    rows = PlatformScope(db).execute(
        select(Plan.currency, func.sum(Plan.monthly_price)).select_from(Subscription)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.status == "active", Plan.monthly_price > 0)
        .group_by(Plan.currency)).all()
    return {currency: int(total) for currency, total in rows if currency is not None}


def arr(db: Session) -> dict[str, int]:
    return {currency: 12 * amount for currency, amount in mrr(db).items()}


@dataclass(frozen=True)
class PeriodRevenue:
    period: Period
    currency: str
    subscription: int   # fee lines, minor units
    usage: int          # overage lines, minor units

    @property
    def total(self) -> int:
        return self.subscription + self.usage


def _issued_by_kind(db: Session, first: Period, last: Period) -> dict[tuple[Period, str, str], int]:
    rows = PlatformScope(db).execute(
        select(Invoice.period_start, Invoice.currency, InvoiceLine.kind, func.sum(InvoiceLine.amount))
        .select_from(InvoiceLine).join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.status.in_(ISSUED), Invoice.period_start >= first.start,
               Invoice.period_start < last.end)
        .group_by(Invoice.period_start, Invoice.currency, InvoiceLine.kind)).all()
    found: dict[tuple[Period, str, str], int] = defaultdict(int)
    for start, currency, kind, amount in rows:
        found[(Period.of(start), currency, kind)] += int(amount or 0)
    return found


def usage_revenue(db: Session, period: Period) -> dict[str, int]:
    """Overage invoiced for ``period`` per currency (issued invoices only)."""
    return {currency: amount for (_, currency, kind), amount in _issued_by_kind(db, period, period).items()
            if kind == "overage" and amount}


def trend(db: Session, last: Period, months: int = 12) -> list[PeriodRevenue]:
    """Per period (oldest first) and currency, for the ``months`` periods ending with ``last``;
    a period with no issued invoice in a currency seen in the window shows zeros."""
    periods = [last]
    while len(periods) < months:
        periods.insert(0, periods[0].previous())
    found = _issued_by_kind(db, periods[0], last)
    currencies = sorted({currency for (_, currency, _) in found})
    return [PeriodRevenue(p, c, found.get((p, c, "fee"), 0), found.get((p, c, "overage"), 0))
            for p in periods for c in currencies]
