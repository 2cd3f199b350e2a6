"""Our plans, kept in step in Lago: the ledger is where an operator prices things, Lago bills with it.

Each plan with a currency becomes a Lago plan under the same ``code``: monthly, billed in arrears (the
ledger invoices the fee when the period closes), ``amount_cents`` = the monthly fee in minor units, and
one charge per meter the plan prices (an overage price above zero). A meter's included units are free
and each unit beyond them costs the overage price, which in Lago's terms is:

- nothing included: the ``standard`` model, ``amount`` = the price per unit;
- N included: the ``graduated`` model with Lago's documented tiers ``0..N`` at 0 and ``N+1..∞`` at the
  price. Lago counts ``units - (N+1) + 1`` units in the second tier, so (used - N) x price: the same
  quantity the ledger's overage line prices, fractions of STT seconds included.

Lago's prices are decimal text in major units (``"0.0005"`` EUR for 0.05 cents); the conversion uses
the currency's exponent from CLDR (babel), exactly, in Decimal.

A plan without a currency charges nothing (cloud/billing/plans.py) and Lago needs a currency for every
plan, so it is not pushed; a tenant on it is reported by the customer sync. A plan made in Lago by hand
under one of our codes is overwritten with the ledger's terms. What Lago accepted is kept in
``lago_plans``, so a pass only calls Lago for a plan that changed (its terms, its code, or the ids of
the billable metrics its charges name).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_precision
from sqlalchemy.orm import Session

from cloud.billing.lago.client import LagoAuthError, LagoError, LagoGateway, LagoRefused, LagoUnavailable
from cloud.billing.plans import terms
from cloud.db.billing import BILLING_METERS, Plan
from cloud.db.lago import LagoPlan
from cloud.scoping import PlatformScope

log = logging.getLogger(__name__)


def major_units(minor: Decimal, currency: str) -> str:
    """A price in minor units as Lago's decimal text in major units, exactly (no float, no exponent)."""
    value = Decimal(minor).scaleb(-get_currency_precision(currency))
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def charge(metric_id: str, included: int, price: str) -> dict[str, Any]:
    if included == 0:
        return {"billable_metric_id": metric_id, "charge_model": "standard", "pay_in_advance": False,
                "invoiceable": True, "properties": {"amount": price}}
    ranges = [{"from_value": 0, "to_value": included, "per_unit_amount": "0", "flat_amount": "0"},
              {"from_value": included + 1, "to_value": None, "per_unit_amount": price, "flat_amount": "0"}]
    return {"billable_metric_id": metric_id, "charge_model": "graduated", "pay_in_advance": False,
            "invoiceable": True, "properties": {"graduated_ranges": ranges}}


def plan_payload(plan: Plan, metric_ids: dict[str, str]) -> dict[str, Any]:
    """The body of Lago's POST/PUT /plans for one of our plans (which must have a currency)."""
    if plan.currency is None:
        raise ValueError(f"plan {plan.code} has no currency")
    charges = []
    for meter, meter_terms in sorted(terms(plan).items(), key=lambda item: BILLING_METERS.index(item[0])):
        if meter_terms.overage_price > 0:
            if meter not in metric_ids:
                raise LagoError(f"plan {plan.code}: Lago has no billable metric {meter}")
            charges.append(charge(metric_ids[meter], meter_terms.included,
                                  major_units(meter_terms.overage_price, plan.currency)))
    return {"name": plan.name, "code": plan.code, "interval": "monthly", "amount_cents": plan.monthly_price,
            "amount_currency": plan.currency, "pay_in_advance": False, "charges": charges}


def _already_exists(exc: LagoRefused) -> bool:
    details = exc.details if isinstance(exc.details, dict) else {}
    return exc.status == 422 and "value_already_exist" in (details.get("code") or [])


@dataclass
class PlanSync:
    calls: int = 0
    pushed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _push(gateway: LagoGateway, held: dict[str, Any] | None, payload: dict[str, Any]) -> int:
    """Create or update the Lago plan; returns the calls made."""
    if held:
        if gateway.update_plan(held["code"], payload):
            return 1
        gateway.create_plan(payload)       # deleted in Lago since: made again
        return 2
    try:
        gateway.create_plan(payload)
        return 1
    except LagoRefused as exc:
        if not _already_exists(exc):
            raise
    gateway.update_plan(payload["code"], payload)   # made in Lago by hand: the ledger's terms win
    return 2


def sync_plans(db: Session, gateway: LagoGateway, metric_ids: dict[str, str], now: datetime) -> PlanSync:
    """Push every plan with a currency whose Lago copy differs (commits after each plan).

    A plan Lago refuses is reported, its reason kept for the operator's page, and the others go on;
    LagoUnavailable and LagoAuthError propagate. Only what Lago accepted is recorded as its payload,
    so the next pass tries a refused plan again."""
    platform = PlatformScope(db)
    held = {row.plan_id: row for row in platform.all(LagoPlan)}
    result = PlanSync()
    for plan in platform.all(Plan, order_by=Plan.code):
        if plan.currency is None:
            continue
        row = held.get(plan.id)
        try:
            payload = plan_payload(plan, metric_ids)
            if row is not None and row.payload == payload:
                continue
            result.calls += _push(gateway, row.payload if row is not None else None, payload)
        except (LagoUnavailable, LagoAuthError):
            raise
        except LagoError as exc:
            result.failures.append(f"plan {plan.code}: {exc}")
            log.error("Lago refused plan %s: %s", plan.code, exc)
            if row is None:   # kept with an empty payload: nothing accepted yet, the reason shown
                row = held[plan.id] = platform.add(LagoPlan(plan_id=plan.id, payload={}))
            row.last_error = str(exc)[:1000]
            db.commit()
            continue
        if row is None:
            row = platform.add(LagoPlan(plan_id=plan.id, payload={}))
        row.payload = copy.deepcopy(payload)   # a new object, so the JSON column sees the change
        row.synced_at, row.last_error = now, None
        db.commit()
        result.pushed.append(plan.code)
    return result
