"""The tenant's billing page (owners and admins): the plan and period, a scheduled plan change, usage against
the plan's included units (bars green below 80 %, amber from 80 %, red from 100 %, each with its words),
the hard-limit banner, issued invoices (printable page and CSV of the lines), and the plan change itself.

A change takes effect at the next period (docs/billing.md: no proration); choosing the current plan again
cancels a scheduled change. A tenant on no plan may choose one, which starts with the current period.
Cancelling ends the subscription with the current period, which is still invoiced; it can be undone
until then. Every change goes through cloud/billing/subscriptions.py and is audited as the person.

Drafts are the operator's working copies: a tenant sees an invoice once it is finalized (a draft's id
answers 404, like another tenant's).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for

from cloud.billing import enforce, subscriptions
from cloud.billing.errors import BillingError
from cloud.billing.invoices import lines as invoice_lines
from cloud.billing.limits import limit_state
from cloud.billing.periods import Period
from cloud.db import utcnow
from cloud.db.billing import Invoice, Plan
from cloud.db.session import get_db
from cloud.scoping import PlatformScope
from cloud.web import billing_common as common
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import as_uuid

common.register(bp)


def _plans() -> dict[uuid.UUID, Plan]:
    """Plans are the platform's price list: read through the PlatformScope, as the ledger does."""
    return {p.id: p for p in PlatformScope(get_db()).all(Plan, order_by=[Plan.monthly_price, Plan.name])}


def _render(form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
            status: int = 200) -> tuple[str, int]:
    tenant_id = scope().tenant_id
    db = get_db()
    sub = subscriptions.current(db, tenant_id)
    active = sub is not None and sub.status == "active"
    period = Period(sub.current_period_start) if active else Period.of(utcnow())
    state = limit_state(db, tenant_id, period)
    plans = _plans()
    invoices = scope().all(Invoice, Invoice.status != "draft", order_by=Invoice.period_start.desc())
    return render_template(
        "tenant/billing.html", sub=sub if active else None, ended=sub if sub and not active else None,
        period=period, plans=plans, offered=[p for p in plans.values() if p.status == "active"],
        bars=common.bars(state), limit_blocked=enforce.blocked_meters(db, tenant_id),
        invoices=invoices, form=form or {}, errors=errors or {}, ep="tenant"), status


@bp.get("/billing")
@allow(*TENANT_ADMINS)
def billing() -> tuple[str, int]:
    return _render()


@bp.post("/billing/plan")
@allow(*TENANT_ADMINS)
def change_plan() -> Response | tuple[str, int]:
    form = {"plan_id": request.form.get("plan_id", "").strip()}
    plan_id = as_uuid(form["plan_id"])
    plan = _plans().get(plan_id) if plan_id else None
    if plan is None or plan.status != "active":
        return _render(form, {"plan_id": "Choose one of the plans offered."}, 400)
    db = get_db()
    tenant_id = scope().tenant_id
    sub = subscriptions.current(db, tenant_id)
    try:
        if sub is None or sub.status != "active":
            subscriptions.subscribe(db, tenant_id, plan.id, actor=g.actor)
            message = f"You are on {plan.name} from this period ({Period.of(utcnow()).label})."
        else:
            changed = subscriptions.change_plan(db, tenant_id, plan.id, actor=g.actor)
            following = Period(changed.current_period_start).next().label
            message = (f"No change is scheduled: you stay on {plan.name}." if changed.next_plan_id is None
                       else f"You move to {plan.name} on {following}-01; this period stays on your "
                            "current plan.")
        db.commit()
    except BillingError as exc:
        db.rollback()
        return _render(form, {"plan_id": f"{exc}."}, 400)
    flash(message)
    return redirect(url_for("tenant.billing"))


def _subscription_action(action: Any, done: str) -> Response:
    db = get_db()
    try:
        action(db, scope().tenant_id, actor=g.actor)
        db.commit()
    except BillingError as exc:
        db.rollback()
        flash(f"Nothing changed: {exc}.", "error")
        return redirect(url_for("tenant.billing"))
    flash(done)
    return redirect(url_for("tenant.billing"))


@bp.post("/billing/cancel")
@allow(*TENANT_ADMINS)
def cancel() -> Response:
    return _subscription_action(subscriptions.cancel, "Your subscription ends with this period, which is "
                                                      "still invoiced. You can resume it until then.")


@bp.post("/billing/resume")
@allow(*TENANT_ADMINS)
def resume() -> Response:
    return _subscription_action(subscriptions.resume,
                                "Your subscription continues: the cancellation is undone.")


def _issued(invoice_id: uuid.UUID) -> Invoice:
    """The signed-in tenant's issued invoice, else 404 (a draft, or another tenant's, is not there)."""
    found = scope().get(Invoice, invoice_id)
    if found is None or found.status == "draft":
        abort(404)
    return found


@bp.get("/billing/invoices/<uuid:invoice_id>")
@allow(*TENANT_ADMINS)
def invoice(invoice_id: uuid.UUID) -> str:
    found = _issued(invoice_id)
    return render_template("billing/invoice.html", ep="tenant", invoice=found, tenant_row=g.tenant,
                           plan=_plans().get(found.plan_id),
                           lines=invoice_lines(get_db(), found.tenant_id, found.id))


@bp.get("/billing/invoices/<uuid:invoice_id>.csv")
@allow(*TENANT_ADMINS)
def invoice_csv(invoice_id: uuid.UUID) -> Response:
    found = _issued(invoice_id)
    body = common.lines_csv(invoice_lines(get_db(), found.tenant_id, found.id))
    name = f"voxfleet-invoice-{g.tenant.slug}-{Period.of(found.period_start).label}.csv"
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
