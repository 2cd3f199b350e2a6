"""Plans: the operator's price lists. Validated with pydantic before they reach the table.

Prices are integer minor units (cents). The monthly fee is capped at 100,000,000 minor units
(1,000,000.00 a month): anything above is a typo (cents entered as units), not a price. Overage prices
are per unit in minor units and may be fractional (0.05 cents per TTS character) with at most six
decimals; they are kept as decimal text so no float ever rounds them. A plan that charges anything
needs a currency; only a plan with no fee and no overage may have none.

A plan in use (by a subscription, a scheduled plan change or an invoice) cannot be deleted: its
invoices must keep pointing at the terms they were computed from. Archive it instead; an archived
plan keeps its subscribers but takes no new ones. Editing a plan in use may not change its currency
(its open period would be invoiced in another currency than the one subscribed to).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import or_
from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.billing.currency import normalise_currency
from cloud.billing.errors import CurrencyMismatch, PlanInUse, PlanInvalid
from cloud.db.base import utcnow
from cloud.db.billing import BILLING_METERS, Invoice, Plan, Subscription
from cloud.scoping import PlatformScope

MAX_MONTHLY_PRICE = 100_000_000          # minor units: 1,000,000.00 a month
MAX_UNIT_PRICE = Decimal(1_000_000)      # minor units per unit: 10,000.00 per unit
MAX_UNITS = 10**15


class MeterTerms(BaseModel):
    """One meter's terms on a plan; limits are in the meter's units, None means none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    included: int = Field(default=0, ge=0, le=MAX_UNITS)
    overage_price: Decimal = Field(default=Decimal(0), ge=0, le=MAX_UNIT_PRICE, decimal_places=6,
                                   allow_inf_nan=False)
    soft_limit: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    hard_limit: int | None = Field(default=None, ge=0, le=MAX_UNITS)

    @model_validator(mode="after")
    def _limits_in_order(self) -> MeterTerms:
        if self.soft_limit is not None and self.hard_limit is not None and self.hard_limit < self.soft_limit:
            raise ValueError(f"hard limit {self.hard_limit} is below soft limit {self.soft_limit}")
        return self

    def stored(self) -> dict[str, Any]:
        return {"included": self.included, "overage_price": str(self.overage_price),
                "soft_limit": self.soft_limit, "hard_limit": self.hard_limit}


class PlanSpec(BaseModel):
    """What an operator submits to create or edit a plan."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    currency: str | None = None
    monthly_price: int = Field(default=0, ge=0, le=MAX_MONTHLY_PRICE, strict=True)
    meters: dict[str, MeterTerms] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value in (None, "") else normalise_currency(value)

    @field_validator("meters")
    @classmethod
    def _known_meters(cls, value: dict[str, MeterTerms]) -> dict[str, MeterTerms]:
        unknown = sorted(set(value) - set(BILLING_METERS))
        if unknown:
            raise ValueError(f"unknown meter {', '.join(unknown)}; meters are {', '.join(BILLING_METERS)}")
        return value

    @model_validator(mode="after")
    def _currency_when_charging(self) -> PlanSpec:
        if self.currency is None:
            charged = [m for m, t in self.meters.items() if t.overage_price > 0]
            if self.monthly_price > 0:
                raise ValueError("a plan with a monthly price needs a currency")
            if charged:
                raise ValueError(f"overage prices ({', '.join(sorted(charged))}) need a currency")
        return self


def validate(spec: PlanSpec | dict[str, Any]) -> PlanSpec:
    """A PlanSpec, or PlanInvalid listing every problem in one sentence per field."""
    if isinstance(spec, PlanSpec):
        return spec
    try:
        return PlanSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}"
                             for e in exc.errors())
        raise PlanInvalid(f"invalid plan: {problems}") from None


def terms(plan: Plan) -> dict[str, MeterTerms]:
    """The plan's per-meter terms, as validated objects."""
    return {meter: MeterTerms.model_validate(value) for meter, value in (plan.meters or {}).items()}


def create_plan(db: Session, spec: PlanSpec | dict[str, Any], actor: str = "operator") -> Plan:
    checked = validate(spec)
    platform = PlatformScope(db)
    if platform.first(Plan, Plan.code == checked.code) is not None:
        raise PlanInvalid(f"invalid plan: code: a plan with code {checked.code!r} already exists")
    plan = platform.add(Plan(name=checked.name, code=checked.code, currency=checked.currency,
                             monthly_price=checked.monthly_price, status="active",
                             meters={m: t.stored() for m, t in checked.meters.items()}))
    platform.flush()
    audit(db, actor, "plan.create", target=f"plan:{plan.id}", code=plan.code)
    return plan


def in_use(db: Session, plan_id: uuid.UUID) -> bool:
    """Whether any tenant's subscription, scheduled change or invoice refers to the plan."""
    platform = PlatformScope(db)
    return (platform.first(Subscription, or_(Subscription.plan_id == plan_id,
                                             Subscription.next_plan_id == plan_id)) is not None
            or platform.first(Invoice, Invoice.plan_id == plan_id) is not None)


def _plan(db: Session, plan_id: uuid.UUID) -> Plan:
    plan = PlatformScope(db).get(Plan, plan_id)
    if plan is None:
        raise PlanInvalid(f"no plan {plan_id}")
    return plan


def update_plan(db: Session, plan_id: uuid.UUID, spec: PlanSpec | dict[str, Any],
                actor: str = "operator") -> Plan:
    """Edit a plan's terms. They apply to periods closed from now on (open periods included); a period
    already closed keeps the terms its invoice stored at the close (invoices.py, ``InvoiceTerms``)."""
    checked = validate(spec)
    plan = _plan(db, plan_id)
    if checked.code != plan.code and PlatformScope(db).first(Plan, Plan.code == checked.code) is not None:
        raise PlanInvalid(f"invalid plan: code: a plan with code {checked.code!r} already exists")
    if checked.currency != plan.currency and in_use(db, plan.id):
        raise CurrencyMismatch(f"plan {plan.code} is in use in {plan.currency}: its currency cannot change "
                               "(make a new plan and move subscribers to it)")
    plan.name, plan.code, plan.currency = checked.name, checked.code, checked.currency
    plan.monthly_price = checked.monthly_price
    plan.meters = {m: t.stored() for m, t in checked.meters.items()}
    PlatformScope(db).flush()
    audit(db, actor, "plan.update", target=f"plan:{plan.id}", code=plan.code)
    return plan


def archive_plan(db: Session, plan_id: uuid.UUID, actor: str = "operator") -> Plan:
    """Stop offering the plan; its subscribers stay on it until they change."""
    plan = _plan(db, plan_id)
    if plan.status != "archived":
        plan.status, plan.archived_at = "archived", utcnow()
        PlatformScope(db).flush()
        audit(db, actor, "plan.archive", target=f"plan:{plan.id}", code=plan.code)
    return plan


def delete_plan(db: Session, plan_id: uuid.UUID, actor: str = "operator") -> None:
    """Delete a plan nobody ever used; PlanInUse otherwise (the foreign keys refuse it too)."""
    plan = _plan(db, plan_id)
    if in_use(db, plan.id):
        raise PlanInUse(f"plan {plan.code} is in use by subscriptions or invoices: archive it instead")
    code = plan.code
    platform = PlatformScope(db)
    db.delete(plan)
    platform.flush()
    audit(db, actor, "plan.delete", target=f"plan:{plan_id}", code=code)


def unarchive_plan(db: Session, plan_id: uuid.UUID, actor: str = "operator") -> Plan:
    """Offer an archived plan again (an archive by mistake is undone, not re-created under a new code)."""
    plan = _plan(db, plan_id)
    if plan.status != "active":
        plan.status, plan.archived_at = "active", None
        PlatformScope(db).flush()
        audit(db, actor, "plan.unarchive", target=f"plan:{plan.id}", code=plan.code)
    return plan
