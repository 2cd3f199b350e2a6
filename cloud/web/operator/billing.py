"""The operator's billing pages: revenue (MRR, ARR, usage revenue, outstanding invoices, revenue by plan, a
12-month trend), the invoice list with its actions, each tenant's plan, and the plans themselves.

The views attach to the operator blueprint (imported at the end of cloud/web/operator/__init__.py) and
read only through the operator's PlatformScope, like every operator page
(tests/cloud/web/operator/test_pages.py checks it statement by statement). Changes go through the
ledger's own functions (cloud/billing/), which apply its rules (archive, never delete, a plan in use; a
finalized invoice is immutable; a plan change waits for the next period) and write the audit entry in the
same transaction as the change.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from cloud.app import current_config
from cloud.billing import invoices as ledger
from cloud.billing import plans as plan_book
from cloud.billing import revenue, subscriptions
from cloud.billing.errors import BillingError, CurrencyMismatch, InvoiceLocked, PlanInUse, PlanInvalid
from cloud.billing.periods import Period
from cloud.db import Tenant, utcnow
from cloud.db.billing import INVOICE_STATUSES, Invoice, InvoiceLine, Plan, Subscription
from cloud.db.session import get_db
from cloud.scoping import PlatformScope
from cloud.web import billing_common as common
from cloud.web.access import OPERATOR, allow, nav, platform
from cloud.web.operator.blueprint import actor, back_to, bp, page_number
from cloud.web.operator.lago_panel import lago_panel
from cloud.web.operator.queries import Page

nav("operator", "Billing", "operator.billing")
nav("operator", "Plans", "operator.plans")
common.register(bp)

INVOICE_PAGE = 25


# --- queries (PlatformScope only) ----------------------------------------------------------------------

@dataclass(frozen=True)
class PlanRevenue:
    plan: Plan
    subscribers: int
    scheduled: int                   # tenants moving to it at their next period
    mrr: int
    invoiced: dict[str, int]         # last 12 months, issued invoices, per currency
    usage: dict[str, int]            # of which overage


@dataclass(frozen=True)
class InvoiceFilter:
    status: str | None
    tenant_id: uuid.UUID | None
    period: Period | None


def _counts(scope: PlatformScope, column: Any) -> dict[uuid.UUID, int]:
    rows = scope.execute(select(column, func.count())
                         .where(Subscription.status == "active", column.is_not(None)).group_by(column)).all()
    return {plan_id: int(n) for plan_id, n in rows}


def plan_revenue(scope: PlatformScope, first: Period, last: Period) -> list[PlanRevenue]:
    """Per plan: subscribers now, their MRR, and what its issued invoices carried in the window."""
    subscribers = _counts(scope, Subscription.plan_id)
    scheduled = _counts(scope, Subscription.next_plan_id)
    rows = scope.execute(
        select(Invoice.plan_id, Invoice.currency, InvoiceLine.kind, func.sum(InvoiceLine.amount))
        .select_from(InvoiceLine).join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.status.in_(revenue.ISSUED), Invoice.period_start >= first.start,
               Invoice.period_start < last.end)
        .group_by(Invoice.plan_id, Invoice.currency, InvoiceLine.kind)).all()
    invoiced: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    usage: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for plan_id, currency, kind, amount in rows:
        invoiced[plan_id][currency] += int(amount or 0)
        if kind == "overage":
            usage[plan_id][currency] += int(amount or 0)
    found = []
    for plan in scope.all(Plan, order_by=[Plan.status, Plan.name]):
        n = subscribers.get(plan.id, 0)
        found.append(PlanRevenue(plan, n, scheduled.get(plan.id, 0), n * plan.monthly_price,
                                 dict(invoiced.get(plan.id, {})), dict(usage.get(plan.id, {}))))
    return found


def outstanding_counts(scope: PlatformScope) -> dict[str, int]:
    rows = scope.execute(select(Invoice.currency, func.count()).where(Invoice.status == "finalized")
                         .group_by(Invoice.currency)).all()
    return {currency: int(n) for currency, n in rows}


def invoice_page(scope: PlatformScope, where: InvoiceFilter, number: int) -> Page:
    stmt = select(Invoice, Tenant).join(Tenant, Tenant.id == Invoice.tenant_id)
    if where.status:
        stmt = stmt.where(Invoice.status == where.status)
    if where.tenant_id:
        stmt = stmt.where(Invoice.tenant_id == where.tenant_id)
    if where.period:
        stmt = stmt.where(Invoice.period_start == where.period.start)
    stmt = stmt.order_by(Invoice.period_start.desc(), Tenant.name, Invoice.id)
    rows = list(scope.execute(stmt.limit(INVOICE_PAGE + 1).offset((number - 1) * INVOICE_PAGE)).all())
    return Page(rows[:INVOICE_PAGE], number, INVOICE_PAGE, len(rows) > INVOICE_PAGE)


def plan_usage(scope: PlatformScope) -> dict[uuid.UUID, dict[str, int]]:
    """Per plan: active subscribers, scheduled moves to it, and invoices that name it (what "in use" is)."""
    subscribers, scheduled = _counts(scope, Subscription.plan_id), _counts(scope, Subscription.next_plan_id)
    invoices = dict(scope.execute(select(Invoice.plan_id, func.count()).group_by(Invoice.plan_id)).all())
    ended = dict(scope.execute(select(Subscription.plan_id, func.count())
                               .where(Subscription.status != "active").group_by(Subscription.plan_id)).all())
    return {plan.id: {"subscribers": subscribers.get(plan.id, 0), "scheduled": scheduled.get(plan.id, 0),
                      "invoices": int(invoices.get(plan.id, 0)), "ended": int(ended.get(plan.id, 0))}
            for plan in scope.all(Plan)}


# --- billing overview ----------------------------------------------------------------------------------

def _tenant_ref(scope: PlatformScope, ref: str) -> Tenant | None:
    conditions = [Tenant.slug == ref.lower()]
    with contextlib.suppress(ValueError):
        conditions.append(Tenant.id == uuid.UUID(ref))
    return scope.first(Tenant, or_(*conditions))


def _invoice_filter(scope: PlatformScope, args: dict[str, str], errors: dict[str, str]) -> InvoiceFilter:
    status = args["status"] or None
    if status and status not in INVOICE_STATUSES:
        errors["status"] = "Choose a status from the list."
    tenant_id = None
    if args["tenant"]:
        found = _tenant_ref(scope, args["tenant"]) if len(args["tenant"]) <= 200 else None
        if found is None:
            errors["tenant"] = "No tenant with this slug or id."
        else:
            tenant_id = found.id
    period = None
    if args["period"]:
        try:
            period = Period.parse(args["period"])
        except ValueError:
            errors["period"] = "Give a month as YYYY-MM."
    return InvoiceFilter(status, tenant_id, period)


@bp.get("/billing")
@allow(*OPERATOR)
def billing() -> tuple[str, int]:
    scope = platform()
    db = get_db()
    last = Period.of(utcnow()).previous()      # the last period that can have been invoiced
    trend = revenue.trend(db, last)
    first = trend[0].period if trend else last
    args = {name: request.args.get(name, "").strip() for name in ("status", "tenant", "period")}
    errors: dict[str, str] = {}
    where = _invoice_filter(scope, args, errors)
    page = None if errors else invoice_page(scope, where, page_number())
    currencies = sorted({r.currency for r in trend})
    starts = sorted({r.period.start for r in trend})
    chart = {"x": [int(start.timestamp()) for start in starts],
             "series": {c: {"subscription": [float(common.major(r.subscription, c)) for r in trend
                                             if r.currency == c],
                            "usage": [float(common.major(r.usage, c)) for r in trend if r.currency == c]}
                        for c in currencies}}
    usage_12 = defaultdict(int)
    for r in trend:
        usage_12[r.currency] += r.usage
    return render_template(
        "operator/billing.html", mrr=revenue.mrr(db), arr=revenue.arr(db),
        usage_last=revenue.usage_revenue(db, last), usage_12={c: v for c, v in usage_12.items() if v},
        last=last, first=first, outstanding=ledger.outstanding(db), outstanding_n=outstanding_counts(scope),
        by_plan=plan_revenue(scope, first, last), trend=trend, currencies=currencies, chart=chart,
        page=page, args=args, errors=errors, statuses=INVOICE_STATUSES,
        filtered=any(args.values()),
        lago=lago_panel(current_config(), scope, sorted(set(currencies) | set(revenue.mrr(db))))), \
        400 if errors else 200


def _invoice_or_404(invoice_id: uuid.UUID) -> Invoice:
    invoice = platform().get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def _invoice_context(invoice: Invoice) -> dict[str, Any]:
    scope = platform()
    return {"invoice": invoice, "tenant_row": scope.get(Tenant, invoice.tenant_id),
            "plan": scope.get(Plan, invoice.plan_id),
            "lines": scope.all(InvoiceLine, InvoiceLine.invoice_id == invoice.id,
                               order_by=InvoiceLine.position)}


@bp.get("/billing/invoices/<uuid:invoice_id>")
@allow(*OPERATOR)
def invoice(invoice_id: uuid.UUID) -> str:
    found = _invoice_or_404(invoice_id)
    return render_template("billing/invoice.html", ep="operator", **_invoice_context(found))


@bp.get("/billing/invoices/<uuid:invoice_id>.csv")
@allow(*OPERATOR)
def invoice_csv(invoice_id: uuid.UUID) -> Response:
    found = _invoice_or_404(invoice_id)
    context = _invoice_context(found)
    return _csv_response(common.lines_csv(context["lines"]), context["tenant_row"].slug, found)


def _csv_response(body: str, slug: str, found: Invoice) -> Response:
    name = f"voxfleet-invoice-{slug}-{Period.of(found.period_start).label}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(body, mimetype="text/csv", headers=headers)


def _move(invoice_id: uuid.UUID, action: Any, done: str) -> Response:
    found = _invoice_or_404(invoice_id)
    label = f"The invoice of {Period.of(found.period_start).label}"
    tenant_id = found.tenant_id
    try:
        action(get_db(), tenant_id, found.id, actor=actor())
        get_db().commit()
    except (BillingError, InvoiceLocked) as exc:
        get_db().rollback()
        flash(f"{label} was not changed: {exc}", "error")
    else:
        flash(f"{label} is {done}.")
    return redirect(back_to(url_for("operator.billing")))


@bp.post("/billing/invoices/<uuid:invoice_id>/finalize")
@allow(*OPERATOR)
def finalize_invoice(invoice_id: uuid.UUID) -> Response:
    return _move(invoice_id, ledger.finalize, "finalized: it can no longer change, and the tenant sees it")


@bp.post("/billing/invoices/<uuid:invoice_id>/pay")
@allow(*OPERATOR)
def pay_invoice(invoice_id: uuid.UUID) -> Response:
    return _move(invoice_id, ledger.mark_paid, "marked paid")


@bp.post("/billing/invoices/<uuid:invoice_id>/void")
@allow(*OPERATOR)
def void_invoice(invoice_id: uuid.UUID) -> Response:
    return _move(invoice_id, ledger.void, "void")


# --- one tenant's plan ---------------------------------------------------------------------------------

def _render_tenant_billing(tenant: Tenant, form: dict[str, str] | None = None,
                           errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    scope = platform()
    sub = scope.first(Subscription, Subscription.tenant_id == tenant.id)
    plans = {p.id: p for p in scope.all(Plan, order_by=Plan.name)}
    return render_template(
        "operator/billing_tenant.html", t=tenant, sub=sub, plans=plans,
        offered=[p for p in plans.values() if p.status == "active"],
        period=Period(sub.current_period_start) if sub else None,
        invoices=scope.all(Invoice, Invoice.tenant_id == tenant.id, order_by=Invoice.period_start.desc()),
        form=form or {}, errors=errors or {}), status


def _tenant_or_404(tenant_id: uuid.UUID) -> Tenant:
    found = platform().get(Tenant, tenant_id)
    if found is None:
        abort(404)
    return found


@bp.get("/billing/tenants/<uuid:tenant_id>")
@allow(*OPERATOR)
def tenant_billing(tenant_id: uuid.UUID) -> tuple[str, int]:
    return _render_tenant_billing(_tenant_or_404(tenant_id))


@bp.get("/billing/tenants")
@allow(*OPERATOR)
def find_tenant_billing() -> Response | tuple[str, int]:
    """The billing page's "a tenant's plan" box: a slug or id to that tenant's billing."""
    ref = request.args.get("tenant", "").strip()
    found = _tenant_ref(platform(), ref) if ref and len(ref) <= 200 else None
    if found is None:
        flash(f"No tenant with the slug or id “{ref[:200]}”." if ref else "Give a tenant's slug or id.",
              "error")
        return redirect(url_for("operator.billing"))
    return redirect(url_for("operator.tenant_billing", tenant_id=found.id))


@bp.post("/billing/tenants/<uuid:tenant_id>/plan")
@allow(*OPERATOR)
def assign_plan(tenant_id: uuid.UUID) -> Response | tuple[str, int]:
    """Put a tenant on a plan (now, if it has none) or change its plan (from its next period)."""
    found = _tenant_or_404(tenant_id)
    form = {"plan_id": request.form.get("plan_id", "").strip()}
    plan = None
    with contextlib.suppress(ValueError):
        plan = platform().get(Plan, uuid.UUID(form["plan_id"]))
    if plan is None:
        return _render_tenant_billing(found, form, {"plan_id": "Choose a plan from the list."}, 400)
    sub = platform().first(Subscription, Subscription.tenant_id == found.id)
    db = get_db()
    try:
        if sub is None or sub.status != "active":
            subscriptions.subscribe(db, found.id, plan.id, actor=actor())
            message = f"{found.name} is on {plan.name} from this period ({Period.of(utcnow()).label})."
        else:
            changed = subscriptions.change_plan(db, found.id, plan.id, actor=actor())
            following = Period(changed.current_period_start).next().label
            message = (f"{found.name} stays on {plan.name}: no change is scheduled."
                       if changed.next_plan_id is None
                       else f"{found.name} moves to {plan.name} at its next period ({following}).")
        db.commit()
    except BillingError as exc:
        # The ledger worked in the tenant's scope; after the rollback the operator's own row is reloaded,
        # and under that scope PostgreSQL's row-level security hides it: back to the platform scope first.
        db.rollback()
        PlatformScope(db)
        return _render_tenant_billing(found, form, {"plan_id": f"{exc}."}, 400)
    flash(message)
    return redirect(url_for("operator.tenant_billing", tenant_id=found.id))


# --- plans ---------------------------------------------------------------------------------------------

@bp.get("/plans")
@allow(*OPERATOR)
def plans() -> str:
    scope = platform()
    return render_template("operator/plans.html", plans=scope.all(Plan, order_by=[Plan.status, Plan.name]),
                           used=plan_usage(scope), meters=common.METER_ROWS,
                           refused=request.args.get("refused", ""))


def _render_plan_form(plan: Plan | None, form: dict[str, str], errors: dict[str, str],
                      status: int = 200) -> tuple[str, int]:
    in_use = plan is not None and plan_book.in_use(get_db(), plan.id)
    return render_template("operator/plans_form.html", plan=plan, form=form, errors=errors, in_use=in_use,
                           meters=common.METER_ROWS, fields=common.METER_FIELDS), status


@bp.get("/plans/new")
@allow(*OPERATOR)
def new_plan() -> tuple[str, int]:
    return _render_plan_form(None, common.plan_form(None), {})


def _ledger_errors(exc: BillingError) -> dict[str, str]:
    text = str(exc).removeprefix("invalid plan: ")
    field = "currency" if isinstance(exc, CurrencyMismatch) else \
        "code" if text.startswith("code: ") else "name"
    text = text.removeprefix("code: ")
    return {field: text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")}


@bp.post("/plans")
@allow(*OPERATOR)
def create_plan() -> Response | tuple[str, int]:
    form, errors, spec = common.read_plan_form(request.form)
    if spec is None:
        return _render_plan_form(None, form, errors, 400)
    db = get_db()
    try:
        made = plan_book.create_plan(db, spec, actor=actor())
        db.commit()
    except PlanInvalid as exc:
        db.rollback()
        return _render_plan_form(None, form, _ledger_errors(exc), 400)
    flash(f"Plan {made.name} ({made.code}) is created and offered to tenants.")
    return redirect(url_for("operator.plans"))


def _plan_or_404(plan_id: uuid.UUID) -> Plan:
    found = platform().get(Plan, plan_id)
    if found is None:
        abort(404)
    return found


@bp.get("/plans/<uuid:plan_id>")
@allow(*OPERATOR)
def edit_plan(plan_id: uuid.UUID) -> tuple[str, int]:
    found = _plan_or_404(plan_id)
    return _render_plan_form(found, common.plan_form(found), {})


@bp.post("/plans/<uuid:plan_id>")
@allow(*OPERATOR)
def update_plan(plan_id: uuid.UUID) -> Response | tuple[str, int]:
    found = _plan_or_404(plan_id)
    form, errors, spec = common.read_plan_form(request.form)
    if spec is None:
        return _render_plan_form(found, form, errors, 400)
    db = get_db()
    try:
        plan_book.update_plan(db, found.id, spec, actor=actor())
        db.commit()
    except (PlanInvalid, CurrencyMismatch) as exc:
        db.rollback()
        return _render_plan_form(_plan_or_404(plan_id), form, _ledger_errors(exc), 400)
    flash(f"Plan {spec.name} is saved; its new terms apply to every period closed from now on.")
    return redirect(url_for("operator.plans"))


def _plan_action(plan_id: uuid.UUID, action: Any, done: str) -> Response:
    found = _plan_or_404(plan_id)
    name = found.name
    db = get_db()
    try:
        action(db, found.id, actor=actor())
        db.commit()
    except PlanInUse as exc:
        db.rollback()
        flash(f"{name} was not deleted: {exc}. Archiving keeps its subscribers and takes no new ones.",
              "error")
        return redirect(url_for("operator.plans", refused=str(plan_id)) + f"#plan-{plan_id}")
    except BillingError as exc:
        db.rollback()
        flash(f"{name} was not changed: {exc}.", "error")
        return redirect(url_for("operator.plans"))
    flash(f"{name} {done}.")
    return redirect(url_for("operator.plans"))


@bp.post("/plans/<uuid:plan_id>/archive")
@allow(*OPERATOR)
def archive_plan(plan_id: uuid.UUID) -> Response:
    return _plan_action(plan_id, plan_book.archive_plan,
                        "is archived: its subscribers stay on it, and no tenant can choose it any more")


@bp.post("/plans/<uuid:plan_id>/unarchive")
@allow(*OPERATOR)
def unarchive_plan(plan_id: uuid.UUID) -> Response:
    return _plan_action(plan_id, plan_book.unarchive_plan, "is offered to tenants again")


@bp.post("/plans/<uuid:plan_id>/delete")
@allow(*OPERATOR)
def delete_plan(plan_id: uuid.UUID) -> Response:
    return _plan_action(plan_id, plan_book.delete_plan, "is deleted")
