"""Tenants and their subscriptions, kept in step in Lago.

- A tenant with a subscription is a Lago customer: ``external_id`` = the tenant id, its name, and the
  currency of its plan. Lago's POST /customers creates or updates, so a rename is the same call.
- Its subscription is a Lago subscription: ``external_id`` = our subscription's id (stable for the
  subscription's life), ``plan_code`` = our plan's code (the plan is pushed to Lago under the same code
  before, cloud/billing/lago/plans.py), calendar billing from its start. A plan change is pushed when
  the ledger applies it (at the period boundary, cloud/billing/subscriptions.py): the same external id
  with the new plan code, which is how Lago changes a subscription's plan.
- A subscription that ended (cancelled at the end of its period), or that was replaced by a new one,
  is terminated in Lago (DELETE). A suspended tenant is not cancelled: it keeps its customer and
  subscription, and the usage it recorded is still billed.

What Lago holds is recorded in ``lago_customers`` after each accepted call, so a sync calls Lago only
for what changed, and a sync stopped half way resumes from what was accepted.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from cloud.billing.lago.client import LagoError, LagoGateway
from cloud.billing.subscriptions import current
from cloud.db.billing import Plan
from cloud.db.lago import LagoCustomer
from cloud.scoping import PlatformScope, TenantScope


@dataclass
class CustomerSync:
    external_subscription_id: str | None = None  # where the tenant's usage goes; None: nowhere now
    calls: int = 0


def _record(scope: TenantScope, row: LagoCustomer, state: dict, now: datetime) -> None:
    row.state = copy.deepcopy(state)   # a new object, so the JSON column sees the change
    row.synced_at, row.last_error = now, None
    scope.commit()


def sync_customer(db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime) -> CustomerSync:
    """Bring Lago's customer and subscriptions for the tenant in line with the ledger (commits)."""
    scope = TenantScope(db, tenant_id)
    tenant = scope.tenant()
    sub = current(db, tenant_id)
    row = scope.first(LagoCustomer)
    if row is None:
        row = scope.add(LagoCustomer(state={}))
        scope.commit()
    state = {"customer": dict(row.state.get("customer") or {}),
             "subscriptions": {k: dict(v) for k, v in (row.state.get("subscriptions") or {}).items()}}
    result = CustomerSync()
    try:
        active = sub is not None and sub.status == "active"
        plan = PlatformScope(db).get(Plan, sub.plan_id) if active and sub is not None else None
        if plan is not None and plan.currency is None:
            raise LagoError(f"plan {plan.code} charges nothing and has no currency, which every Lago plan "
                            "needs: give it a currency to bill its tenants through Lago")
        wanted = {"name": tenant.name, "currency": plan.currency if plan else None}
        if active and state["customer"] != wanted:
            gateway.upsert_customer(str(tenant_id), tenant.name, wanted["currency"])
            result.calls += 1
            state["customer"] = wanted
            _record(scope, row, state, now)
        current_id = str(sub.id) if active and sub is not None else None
        for external_id, held in state["subscriptions"].items():
            if external_id != current_id and not held.get("terminated"):
                gateway.terminate_subscription(external_id)
                result.calls += 1
                held["terminated"] = True
                _record(scope, row, state, now)
        if current_id is not None and plan is not None and sub is not None:
            held = state["subscriptions"].get(current_id)
            if held is None or held.get("plan_code") != plan.code:
                gateway.create_subscription(str(tenant_id), current_id, plan.code, sub.started_at.isoformat())
                result.calls += 1
                state["subscriptions"][current_id] = {"plan_code": plan.code, "terminated": False}
                _record(scope, row, state, now)
            result.external_subscription_id = current_id
    except LagoError as exc:
        row.last_error = str(exc)[:1000]
        scope.commit()
        raise
    return result


def tenants_to_sync(db: Session) -> list[uuid.UUID]:
    """Tenants with a subscription now or a customer in Lago already (to be kept or terminated)."""
    from cloud.db.billing import Subscription

    platform = PlatformScope(db)
    found = {s.tenant_id for s in platform.all(Subscription)}
    found |= {c.tenant_id for c in platform.all(LagoCustomer)}
    return sorted(found)
