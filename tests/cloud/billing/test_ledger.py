"""Plans, subscriptions, invoices and revenue on SQLite and PostgreSQL: bad input is refused with a
clear error, a period closes into exactly one invoice, issued invoices never change, and the
totals (invoice = its lines, MRR = active plans' monthly prices) hold for any input."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from cloud.billing import CurrencyMismatch, PeriodNotOver, PlanInUse, PlanInvalid
from cloud.billing.errors import BillingError, InvoiceLocked
from cloud.billing.invoices import (
    add_line,
    close_period,
    finalize,
    lines,
    lines_csv,
    mark_paid,
    outstanding,
    void,
)
from cloud.billing.plans import archive_plan, create_plan, delete_plan, update_plan
from cloud.billing.revenue import arr, mrr, trend, usage_revenue
from cloud.billing.subscriptions import cancel, change_plan, subscribe
from cloud.db import Invoice, InvoiceLine, Plan, Subscription
from cloud.scoping import PlatformScope, TenantScope
from tests.cloud.billing.test_meter import MARCH, PROPERTY, make_tenant, store, usage_row

APRIL = MARCH.next()
AFTER_MARCH = MARCH.end + timedelta(hours=1)


def plan_spec(code: str = "pro", **changes) -> dict:
    spec = {"name": "Pro", "code": code, "currency": "EUR", "monthly_price": 4900,
            "meters": {"tts_characters": {"included": 1000, "overage_price": "0.05"},
                       "intents_handled": {"included": 10, "overage_price": "2"}}}
    return {**spec, **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"monthly_price": -1}, "monthly_price"),
    ({"monthly_price": 100_000_001}, "monthly_price"),
    ({"monthly_price": 12.5}, "monthly_price"),
    ({"currency": "EUX"}, "unknown currency"),
    ({"currency": None}, "needs a currency"),
    ({"currency": None, "monthly_price": 0},
     "overage prices (intents_handled, tts_characters) need a currency"),
    ({"meters": {"tts_characters": {"overage_price": "-0.01"}}}, "overage_price"),
    ({"meters": {"tts_characters": {"overage_price": "0.0000001"}}}, "decimal"),
    ({"meters": {"minutes": {"included": 1}}}, "unknown meter minutes"),
    ({"meters": {"sessions": {"soft_limit": 10, "hard_limit": 5}}}, "hard limit 5 is below soft limit 10"),
])
def test_bad_plans_are_refused_with_a_clear_error(database, changes, message):
    with database.sessions() as db, pytest.raises(PlanInvalid, match="invalid plan") as refused:
        create_plan(db, plan_spec(**changes))
    assert message in str(refused.value)
    with database.sessions() as db:
        assert PlatformScope(db).all(Plan) == []


def test_a_plan_in_use_cannot_be_deleted_or_change_currency_but_can_be_archived(database):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        used = create_plan(db, plan_spec())
        unused = create_plan(db, plan_spec(code="spare"))
        subscribe(db, tenant_id, used.id, at=MARCH.start)
        db.commit()
        used_id = used.id
        with pytest.raises(PlanInUse, match="archive it instead"):
            delete_plan(db, used.id)
        with pytest.raises(CurrencyMismatch):
            update_plan(db, used.id, plan_spec(currency="USD"))
        with pytest.raises(PlanInvalid, match="already exists"):
            create_plan(db, plan_spec())
        delete_plan(db, unused.id)
        archive_plan(db, used.id)
        db.commit()
        # The database refuses it too, whatever the code above would have said.
        with pytest.raises(IntegrityError):
            platform = PlatformScope(db)
            db.delete(used)
            platform.flush()
        db.rollback()
    with database.sessions() as db:
        assert [(p.code, p.status) for p in PlatformScope(db).all(Plan)] == [("pro", "archived")]
        other, _ = make_tenant(db)
        with pytest.raises(BillingError, match="archived"):
            subscribe(db, other, used_id)


def test_closing_a_period_makes_one_invoice_with_rounded_lines_and_applies_changes_next_period(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        pro = create_plan(db, plan_spec())
        basic = create_plan(db, plan_spec(code="basic", monthly_price=900, meters={}))
        subscribe(db, tenant_id, pro.id, at=MARCH.start + timedelta(days=10))
        change_plan(db, tenant_id, basic.id, now=MARCH.start + timedelta(days=11))   # from April
        db.commit()
        ids = (pro.id, basic.id)
    at = MARCH.start + timedelta(days=12)
    store(database, tenant_id, [usage_row(device, at, at, tts=1011, intents=13)])
    with database.sessions() as db:
        with pytest.raises(PeriodNotOver):
            close_period(db, tenant_id, MARCH, now=MARCH.end - timedelta(seconds=1))
        first = close_period(db, tenant_id, MARCH, now=AFTER_MARCH)
        db.commit()
        again = close_period(db, tenant_id, MARCH, now=AFTER_MARCH)
        db.commit()
        assert again.id == first.id
        assert TenantScope(db, tenant_id).count(Invoice) == 1
        got = [(li.kind, li.meter, li.quantity, li.unit_price, li.amount)
               for li in lines(db, tenant_id, first.id)]
        # 11 characters over at 0.05 cent = 0.55 cent -> 1 cent (half up); 3 intents at 2 cents.
        assert got == [("fee", None, "1", "4900", 4900), ("overage", "tts_characters", "11", "0.05", 1),
                       ("overage", "intents_handled", "3", "2", 6)]
        assert (first.total, first.currency, first.status, first.plan_id) == (4907, "EUR", "draft", ids[0])
        sub = TenantScope(db, tenant_id).first(Subscription)
        assert (sub.plan_id, sub.next_plan_id, sub.current_period_start) == (ids[1], None, APRIL.start)
        csv_text = lines_csv(db, tenant_id, first.id)
        assert csv_text.splitlines()[0] == \
            "position,kind,meter,description,quantity,unit_price,amount,currency"
        assert csv_text.splitlines()[2] == \
            "1,overage,tts_characters,TTS characters over the included units,11,0.05,1,EUR"


def test_finalized_invoices_cannot_change_and_currencies_do_not_mix(database):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        plan = create_plan(db, plan_spec())
        subscribe(db, tenant_id, plan.id, at=MARCH.start)
        cancel(db, tenant_id, now=MARCH.start)
        invoice = close_period(db, tenant_id, MARCH, now=AFTER_MARCH)
        with pytest.raises(CurrencyMismatch, match="USD line cannot go on a EUR invoice"):
            add_line(db, invoice, "adjustment", "setup", Decimal(1), Decimal(100), "USD")
        add_line(db, invoice, "adjustment", "setup", Decimal(1), Decimal(100), "EUR")
        finalize(db, tenant_id, invoice.id)
        db.commit()
        assert outstanding(db, tenant_id) == {"EUR": 5000} == outstanding(db)
        with pytest.raises(InvoiceLocked):
            add_line(db, invoice, "adjustment", "late fee", Decimal(1), Decimal(1), "EUR")
        invoice.total = 1
        with pytest.raises(InvoiceLocked):
            db.flush()
        db.rollback()
        line = TenantScope(db, tenant_id).first(InvoiceLine)
        line.amount = 0
        with pytest.raises(InvoiceLocked):
            db.flush()
        db.rollback()
        mark_paid(db, tenant_id, invoice.id)
        with pytest.raises(InvoiceLocked, match="paid: it cannot become voided"):
            void(db, tenant_id, invoice.id)
        db.commit()
        assert outstanding(db, tenant_id) == {}
        # The cancellation took effect at the end of March: April has nothing to invoice.
        assert TenantScope(db, tenant_id).first(Subscription).status == "canceled"
        with pytest.raises(BillingError, match="ended"):
            close_period(db, tenant_id, APRIL, now=APRIL.end)


terms = st.fixed_dictionaries({}, optional={
    meter: st.fixed_dictionaries({"included": st.integers(0, 2000),
                                  "overage_price": st.decimals(0, 500, places=3).map(str)})
    for meter in ("tts_characters", "intents_handled", "stt_seconds", "active_devices")})


@PROPERTY
@given(price=st.integers(0, 100_000), meters=terms,
       events=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 30), st.integers(0, 900_000)),
                       min_size=1, max_size=4))
def test_invoice_totals_equal_their_lines_and_each_line_is_exact_overage(database, price, meters, events):
    database.wipe()
    with database.sessions() as db:
        tenant_id, devices = make_tenant(db)
        plan = create_plan(db, plan_spec(monthly_price=price, meters=meters))
        subscribe(db, tenant_id, plan.id, at=MARCH.start)
        db.commit()
    at = MARCH.start + timedelta(days=2)
    store(database, tenant_id, [usage_row(devices[i % 2], at, at, tts=t, intents=n, stt_ms=ms)
                                for i, (t, n, ms) in enumerate(events)])
    used = {"tts_characters": sum(e[0] for e in events), "intents_handled": sum(e[1] for e in events),
            "stt_seconds": Decimal(sum(e[2] for e in events)) / 1000, "active_devices": min(len(events), 2)}
    with database.sessions() as db:
        invoice = close_period(db, tenant_id, MARCH, now=AFTER_MARCH)
        db.commit()
        found = lines(db, tenant_id, invoice.id)
        assert invoice.total == sum(li.amount for li in found)
        expected = {m: int((max(Decimal(0), used[m] - t["included"]) * Decimal(t["overage_price"]))
                           .quantize(Decimal(1), rounding=ROUND_HALF_UP))
                    for m, t in meters.items() if Decimal(t["overage_price"]) > 0 and used[m] > t["included"]}
        assert {li.meter: li.amount for li in found if li.kind == "overage"} == expected
        assert [li.amount for li in found if li.kind == "fee"] == [price]


@PROPERTY
@given(prices=st.lists(st.tuples(st.integers(0, 50_000), st.sampled_from(["EUR", "USD"])), min_size=1,
                       max_size=3),
       tenants=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["active", "ending", "ended"])),
                        max_size=4))
def test_mrr_is_the_sum_of_active_plans_monthly_prices(database, prices, tenants):
    database.wipe()
    expected: dict[str, int] = defaultdict(int)
    with database.sessions() as db:
        plans = [create_plan(db, plan_spec(code=f"p{i}", monthly_price=p, currency=c, meters={}))
                 for i, (p, c) in enumerate(prices)]
        for index, state in tenants:
            plan = plans[index % len(plans)]
            tenant_id, _ = make_tenant(db, devices=0)
            subscribe(db, tenant_id, plan.id, at=MARCH.start)
            if state != "active":
                cancel(db, tenant_id, now=MARCH.start)   # still active (and counted) until it ends
            if state == "ended":
                close_period(db, tenant_id, MARCH, now=AFTER_MARCH)
            elif plan.monthly_price:
                expected[plan.currency] += plan.monthly_price
        db.commit()
        assert mrr(db) == dict(expected)
        assert arr(db) == {c: 12 * v for c, v in expected.items()}


def test_revenue_trend_reads_issued_invoices_and_separates_usage(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        plan = create_plan(db, plan_spec())
        subscribe(db, tenant_id, plan.id, at=MARCH.start)
        db.commit()
    store(database, tenant_id, [usage_row(device, MARCH.start, MARCH.start, intents=20)])
    with database.sessions() as db:
        march = close_period(db, tenant_id, MARCH, now=APRIL.end)
        finalize(db, tenant_id, march.id)
        close_period(db, tenant_id, APRIL, now=APRIL.end)    # a draft: not revenue yet
        db.commit()
        assert usage_revenue(db, MARCH) == {"EUR": 20} and usage_revenue(db, APRIL) == {}
        months = trend(db, APRIL)
        assert len(months) == 12 and months[0].period.label == "2025-05"
        issued = [(m.period.label, m.subscription, m.usage) for m in months if m.total]
        assert issued == [("2026-03", 4900, 20)]
