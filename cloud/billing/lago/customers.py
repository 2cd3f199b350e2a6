"""Tenants and their subscriptions, kept in step in Lago, and the window of usage each one bills.

- A tenant billed through Lago is a Lago customer: ``external_id`` = the tenant id, its name, and the
  currency of its plan. Lago's POST /customers creates or updates, so a rename is the same call.
- While the tenant's subscription is active on a plan with a currency, it is a Lago subscription:
  ``external_id`` = our subscription's id, ``plan_code`` = our plan's code (pushed to Lago before,
  cloud/billing/lago/plans.py), calendar billing from the start of the period it began in (the ledger
  bills a first month whole, so Lago must not prorate it). A plan change is pushed when the ledger
  applies it (the period boundary): the same external id with the new plan code.
- Each Lago subscription bills a window of usage, ``[since, until)`` in effective time: ``since`` is
  the start of its first period; ``until`` is set when the ledger stops billing it through Lago --
  cancelled (its ``ended_at``), moved to a plan without a currency (a free plan: the start of the period
  that plan took effect), or replaced by a new subscription. Usage outside every window is never sent:
  the ledger billed it (at nothing, for a free plan).
- An ended Lago subscription is terminated (DELETE, which makes Lago invoice it) only once its usage
  has had the ledger's grace window to arrive (``until + grace``) and none of its events is pending,
  so the last days' usage is in Lago before its final invoice; usage arriving later is billed by the
  ledger only (its invoice is final by then too).
- A subscription billed again after a free interlude is a new Lago subscription,
  ``{subscription id}-{n}``, whose window starts at the period the priced plan took effect.
- A suspended tenant is not cancelled: it keeps its customer and subscription, and its usage is billed.

What Lago holds is recorded in ``lago_customers`` after each accepted call (``state``: the customer,
and per external id ``plan_code``, ``since``, ``until``, ``terminated``), so a pass calls Lago only for
what changed and a pass stopped half way resumes from what was accepted.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cloud.billing.lago.client import LagoGateway
from cloud.billing.periods import Period
from cloud.billing.subscriptions import current
from cloud.db.billing import Plan, Subscription
from cloud.db.lago import LagoCustomer, LagoEvent
from cloud.scoping import PlatformScope, TenantScope

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """Usage with an effective time in ``[since, until)`` goes to the Lago subscription ``external_id``."""

    external_id: str
    since: datetime
    until: datetime | None = None


@dataclass
class CustomerSync:
    windows: list[Window] = field(default_factory=list)
    calls: int = 0

    @property
    def external_subscription_id(self) -> str | None:
        """The open window's subscription (where new usage goes), if any."""
        return next((w.external_id for w in self.windows if w.until is None), None)


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class _Customer:
    """The tenant's Lago state as last accepted, and the calls that change it (each recorded at once)."""

    def __init__(self, db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime) -> None:
        self.scope = TenantScope(db, tenant_id)
        self.gateway, self.tenant_id, self.now = gateway, tenant_id, now
        self.row = self.scope.first(LagoCustomer)
        if self.row is None:
            self.row = self.scope.add(LagoCustomer(state={}))
            self.scope.commit()
        held = self.row.state or {}
        self.customer: dict[str, Any] = dict(held.get("customer") or {})
        held_subs = held.get("subscriptions") or {}
        self.subs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in held_subs.items()}
        self.calls = 0

    def record(self) -> None:
        self.row.state = copy.deepcopy({"customer": self.customer, "subscriptions": self.subs})
        self.row.synced_at, self.row.last_error = self.now, None
        self.scope.commit()

    def ensure_customer(self, name: str, currency: str) -> None:
        wanted = {"name": name, "currency": currency}
        if self.customer != wanted:
            self.gateway.upsert_customer(str(self.tenant_id), name, currency)
            self.calls += 1
            self.customer = wanted
            self.record()

    def ensure_subscription(self, external_id: str, plan_code: str, since: datetime) -> None:
        held = self.subs.get(external_id)
        if held is None or held.get("plan_code") != plan_code:
            self.gateway.create_subscription(str(self.tenant_id), external_id, plan_code, since.isoformat())
            self.calls += 1
            self.subs[external_id] = {"plan_code": plan_code, "since": since.isoformat(),
                                      "until": None, "terminated": False}
            self.record()

    def end(self, external_id: str, until: datetime) -> None:
        held = self.subs[external_id]
        if held.get("until") is None:
            held["until"] = until.isoformat()
            self.record()

    def of(self, sub_id: str) -> list[str]:
        """External ids of our subscription ``sub_id`` in Lago: ``sub_id``, then ``sub_id-2``, ..."""
        return [k for k in self.subs if _belongs(k, sub_id)]

    def open_for(self, sub_id: str) -> str | None:
        """The external id of the subscription's Lago subscription still billing, if any."""
        return next((k for k in self.of(sub_id)
                     if self.subs[k].get("until") is None and not self.subs[k].get("terminated")), None)

    def new_external_id(self, sub_id: str) -> str:
        taken = self.of(sub_id)
        return sub_id if not taken else f"{sub_id}-{len(taken) + 1}"


def _belongs(external_id: str, sub_id: str) -> bool:
    return external_id == sub_id or external_id.startswith(sub_id + "-")


def _ended_at(sub: Subscription | None, now: datetime) -> datetime:
    if sub is not None and sub.ended_at is not None:
        return sub.ended_at
    return Period.of(now).start


def sync_customer(db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime) -> CustomerSync:
    """Bring Lago's customer and subscriptions for the tenant in line with the ledger (commits); returns
    the windows of usage its Lago subscriptions bill (open, and ended but not terminated yet)."""
    lago = _Customer(db, gateway, tenant_id, now)
    tenant = lago.scope.tenant()
    sub = current(db, tenant_id)
    plan = PlatformScope(db).get(Plan, sub.plan_id) if sub is not None else None
    billed = sub is not None and sub.status == "active" and plan is not None and plan.currency is not None
    try:
        sub_id = str(sub.id) if sub is not None else None
        # Windows that stop now: another subscription's, or this one's when it is no longer billed.
        for external_id, held in lago.subs.items():
            if held.get("until") is not None or held.get("terminated"):
                continue
            if sub_id is None or not _belongs(external_id, sub_id):
                lago.end(external_id, Period.of(sub.started_at).start if sub is not None else now)
            elif not billed and sub is not None:
                stopped = sub.ended_at if sub.status != "active" else sub.current_period_start
                lago.end(external_id, stopped or _ended_at(sub, now))
        if billed and sub is not None and plan is not None and sub_id is not None:
            lago.ensure_customer(tenant.name, plan.currency or "")
            external_id = lago.open_for(sub_id)
            if external_id is None:
                first = not lago.of(sub_id)
                since = Period.of(sub.started_at).start if first else sub.current_period_start
                external_id = lago.new_external_id(sub_id)
            else:
                since = _moment(lago.subs[external_id]["since"]) or Period.of(sub.started_at).start
            lago.ensure_subscription(external_id, plan.code, since)
    except Exception as exc:
        lago.row.last_error = str(exc)[:1000]
        lago.scope.commit()
        raise
    windows = [Window(k, _moment(v.get("since")) or EPOCH, _moment(v.get("until")))
               for k, v in lago.subs.items() if not v.get("terminated")]
    return CustomerSync(windows=windows, calls=lago.calls)


def terminate_ended(db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime,
                    grace: timedelta) -> int:
    """Terminate the Lago subscriptions whose window ended ``grace`` ago or more and whose events have
    all been accepted (commits after each); returns the calls made."""
    lago = _Customer(db, gateway, tenant_id, now)
    calls = 0
    for external_id, held in lago.subs.items():
        until = _moment(held.get("until"))
        if held.get("terminated") or until is None or until + grace > now:
            continue
        if lago.scope.count(LagoEvent, LagoEvent.external_subscription_id == external_id,
                            LagoEvent.status == "pending"):
            continue   # its last usage first: Lago invoices a subscription when it is terminated
        gateway.terminate_subscription(external_id)
        calls += 1
        held["terminated"] = True
        lago.record()
    return calls


def tenants_to_sync(db: Session) -> list[uuid.UUID]:
    """Tenants with a subscription now or a customer in Lago already (to be kept or terminated)."""
    platform = PlatformScope(db)
    found = {s.tenant_id for s in platform.all(Subscription)}
    found |= {c.tenant_id for c in platform.all(LagoCustomer)}
    return sorted(found)
