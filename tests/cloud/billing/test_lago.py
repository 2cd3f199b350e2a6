"""The Lago adapter against the Lago stand-in (tests/stand_ins/lago.py), on SQLite and PostgreSQL.

What an operator checks in Lago: one customer per tenant, its subscription on the right plan, the
billable metrics once, and each usage event billed exactly once at the time it happened -- whatever
Lago's outages, lost answers and restarts of the syncer did. The property at the end drives all of it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.billing.invoices import close_period
from cloud.billing.invoices import lines as invoice_lines
from cloud.billing.lago import LagoGateway, sync_once
from cloud.billing.lago.customers import sync_customer
from cloud.billing.lago.outbox import drain, enqueue, pending_count, rejected, requeue_rejected
from cloud.billing.lago.readback import invoices, mrr
from cloud.billing.lago.sync import ensure_metrics
from cloud.billing.plans import create_plan, update_plan
from cloud.billing.subscriptions import cancel, change_plan, subscribe
from cloud.cli import cloud
from cloud.config import CloudConfig, load_config
from cloud.db import LagoEvent, Plan, Tenant
from cloud.scoping import PlatformScope, TenantScope
from cloud.web.operator.lago_panel import lago_panel
from tests.cloud.billing.test_ledger import plan_spec
from tests.cloud.billing.test_meter import MARCH, PROPERTY, make_tenant, store, usage_row
from tests.stand_ins.lago import LagoStandIn

METER_CODES = {"sessions": "count_agg", "stt_seconds": "sum_agg", "tts_characters": "sum_agg",
               "intents_handled": "sum_agg", "active_devices": "unique_count_agg", "llm_tokens": "sum_agg"}
LATER = datetime(2026, 6, 1, tzinfo=UTC)   # "now" for syncs: every backoff has passed by then


@pytest.fixture
def lago():
    stand_in = LagoStandIn().start()
    stand_in.add_plan("pro", 4900, "EUR", "Pro")
    stand_in.add_plan("team", 9900, "EUR", "Team")
    yield stand_in
    stand_in.stop()


@pytest.fixture
def gateway(lago):
    return LagoGateway(lago.url, lago.api_key)


def subscribed_tenant(database, code: str = "pro", devices: int = 2):
    """A tenant with devices, subscribed since March to the plan ``code`` (made if missing)."""
    with database.sessions() as db:
        tenant_id, device_ids = make_tenant(db, devices=devices)
        plan = (PlatformScope(db).first(Plan, Plan.code == code)
                or create_plan(db, plan_spec(code, name=code.title())))
        sub = subscribe(db, tenant_id, plan.id, at=MARCH.start + timedelta(days=2))
        db.commit()
        return tenant_id, device_ids, str(sub.id)


def unix(ts: datetime) -> str:
    """Lago's timestamp for a moment, worked out here independently of the adapter."""
    whole = int(ts.replace(microsecond=0).timestamp())
    return f"{whole}.{ts.microsecond:06d}"


def sync(database, gateway, now=LATER, batch_size=100):
    return sync_once(sessions=database.sessions, gateway=gateway, now=now, batch_size=batch_size)


def usage_in_march(devices, count: int, **values):
    base = MARCH.start + timedelta(days=5, microseconds=123456)
    return [usage_row(devices[i % len(devices)], base + timedelta(minutes=i),
                      base + timedelta(minutes=i, seconds=3), **values) for i in range(count)]


def lago_batches(lago) -> int:
    return sum(1 for method, path, _ in lago.requests if method == "POST" and path.endswith("/events/batch"))


# --- customers, subscriptions, metrics ------------------------------------------------------------

def test_first_sync_creates_metrics_customer_subscription_and_sends_usage(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    rows = usage_in_march(devices, 3, stt_ms=1530, tts=42, intents=1)
    store(database, tenant_id, rows)

    report = sync(database, gateway)

    assert report.ok, str(report)
    assert {code: m["aggregation_type"] for code, m in lago.metrics.items()} == METER_CODES
    assert lago.customers[str(tenant_id)]["name"] == "Acme"
    assert lago.customers[str(tenant_id)]["currency"] == "EUR"
    held = lago.subscriptions[sub_id]
    assert (held["external_customer_id"], held["plan_code"], held["status"]) == (
        str(tenant_id), "pro", "active")
    events = lago.events_of(sub_id)
    assert len(events) == 3 * 5  # sessions, active_devices, stt, tts, intents (no llm tokens used)
    for row in rows:
        mine = {e.code: e for e in events if e.transaction_id.startswith(str(row["event_id"]))}
        assert set(mine) == {"sessions", "active_devices", "stt_seconds", "tts_characters", "intents_handled"}
        assert {e.timestamp for e in mine.values()} == {unix(row["ts"])}
        assert mine["stt_seconds"].properties["stt_seconds"] == "1.530"
        assert mine["tts_characters"].properties["tts_characters"] == 42
        assert mine["active_devices"].properties["device_id"] == str(row["device_id"])
    assert report.sent == 15 and report.pending == 0


def test_a_second_sync_with_nothing_new_changes_nothing_in_lago(database, lago, gateway):
    tenant_id, devices, _ = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2, tts=5))
    sync(database, gateway)
    before = (lago.metric_creates, lago.customer_writes, len(lago.subscriptions), lago_batches(lago),
              lago.stored)

    report = sync(database, gateway)

    assert report.metrics_created == [] and report.customer_calls == 0 and report.queued == 0
    assert (lago.metric_creates, lago.customer_writes, len(lago.subscriptions), lago_batches(lago),
            lago.stored) == before == (6, 1, 1, 1, 6)


def test_metrics_already_in_lago_are_not_created_again(database, lago, gateway):
    sync(database, gateway)
    assert lago.metric_creates == 6
    lago.metrics.pop("llm_tokens")   # someone deleted one in Lago's UI
    report = sync(database, gateway)
    assert report.metrics_created == ["llm_tokens"] and lago.metric_creates == 7


def test_plan_change_and_cancellation_follow_the_ledger(database, lago, gateway):
    tenant_id, _, sub_id = subscribed_tenant(database)
    with database.sessions() as db:
        team = create_plan(db, plan_spec("team", name="Team", monthly_price=9900))
        db.commit()
        team_id = team.id
    sync(database, gateway)
    with database.sessions() as db:
        change_plan(db, tenant_id, team_id, now=MARCH.start + timedelta(days=9))
        db.commit()
    sync(database, gateway)
    assert lago.subscriptions[sub_id]["plan_code"] == "pro"   # scheduled for the next period only

    with database.sessions() as db:
        close_period(db, tenant_id, MARCH, now=LATER)            # the change takes effect
        db.commit()
    sync(database, gateway)
    assert lago.subscriptions[sub_id]["plan_code"] == "team"
    assert lago.subscriptions[sub_id]["plan_history"] == ["pro", "team"]

    with database.sessions() as db:
        cancel(db, tenant_id, now=MARCH.next().start + timedelta(days=9))
        db.commit()
    sync(database, gateway)
    assert lago.subscriptions[sub_id]["status"] == "active"    # cancelled at the period's end, not now
    with database.sessions() as db:
        close_period(db, tenant_id, MARCH.next(), now=LATER)
        db.commit()
    sync(database, gateway)
    assert lago.subscriptions[sub_id]["status"] == "terminated"

    with database.sessions() as db:                            # back again: a new subscription
        new_id = str(subscribe(db, tenant_id, team_id, at=LATER).id)
        db.commit()
    sync(database, gateway)
    renewed = lago.subscriptions[new_id]
    assert (renewed["status"], renewed["plan_code"]) == ("active", "team")
    assert lago.subscriptions[sub_id]["status"] == "terminated"


def test_a_suspended_tenant_keeps_its_subscription_and_its_usage_is_billed(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2, intents=2))
    with database.sessions() as db:
        tenant = PlatformScope(db).get(Tenant, tenant_id)
        tenant.status, tenant.suspended_at = "suspended", LATER
        db.commit()
    report = sync(database, gateway)
    assert report.ok, str(report)
    assert lago.subscriptions[sub_id]["status"] == "active"
    assert len(lago.events_of(sub_id)) == 2 * 3


def test_plans_are_pushed_with_their_charges_and_a_hand_made_one_takes_the_ledgers_terms(
        database, lago, gateway):
    # "pro" was made by hand in Lago (the fixture); "enterprise" exists only in the ledger.
    with database.sessions() as db:
        create_plan(db, plan_spec("enterprise", name="Enterprise", monthly_price=100000, meters={
            "sessions": {"included": 0, "overage_price": "1.5"},
            "stt_seconds": {"included": 600, "overage_price": "0.25"},
            "tts_characters": {"included": 1000, "overage_price": "0"}}))   # free: no charge
        db.commit()
    tenant_id, devices, sub_id = subscribed_tenant(database, code="enterprise")
    subscribed_tenant(database, code="pro")

    report = sync(database, gateway)

    assert report.ok, str(report)
    assert report.plans_pushed == ["enterprise", "pro"]
    ids = {code: m["lago_id"] for code, m in lago.metrics.items()}
    enterprise = lago.plans["enterprise"]
    assert (enterprise["name"], enterprise["amount_cents"], enterprise["amount_currency"],
            enterprise["interval"], enterprise["pay_in_advance"]) == (
        "Enterprise", 100000, "EUR", "monthly", False)
    charges = enterprise["charges"]
    assert [(c["lago_billable_metric_id"], c["charge_model"], c["properties"]) for c in charges] == [
        (ids["sessions"], "standard", {"amount": "0.015"}),     # 1.5 cents a session, in euros
        (ids["stt_seconds"], "graduated", {"graduated_ranges": [
            {"from_value": 0, "to_value": 600, "per_unit_amount": "0", "flat_amount": "0"},
            {"from_value": 601, "to_value": None, "per_unit_amount": "0.0025", "flat_amount": "0"}]}),
    ]
    pro = lago.plans["pro"]                    # the ledger's terms replaced the hand-made ones
    assert [(c["billable_metric_code"], c["charge_model"]) for c in pro["charges"]] == [
        ("tts_characters", "graduated"), ("intents_handled", "graduated")]
    assert lago.subscriptions[sub_id]["plan_code"] == "enterprise"

    writes = lago.plan_writes
    assert sync(database, gateway).plans_pushed == [] and lago.plan_writes == writes   # nothing changed


def test_an_edited_plan_is_pushed_once_and_lago_prices_usage_as_the_ledger_does(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)    # pro: 1000 TTS characters included
    store(database, tenant_id, usage_in_march(devices, 3, tts=400, intents=5))   # 1200 chars, 15 intents
    sync(database, gateway)
    with database.sessions() as db:
        plan = PlatformScope(db).first(Plan, Plan.code == "pro")
        update_plan(db, plan.id, plan_spec("pro", name="Pro 2026", meters={
            "tts_characters": {"included": 1000, "overage_price": "0.04"},
            "intents_handled": {"included": 10, "overage_price": "2"}}))
        db.commit()

    report = sync(database, gateway)

    assert report.plans_pushed == ["pro"] and lago.plans["pro"]["name"] == "Pro 2026"
    with database.sessions() as db:
        invoice = close_period(db, tenant_id, MARCH, now=LATER)
        lines = {line.meter: line.amount for line in invoice_lines(db, tenant_id, invoice.id)
                 if line.kind == "overage"}
    in_lago = {code: int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
               for code, amount in lago.charges_of(sub_id).items()}
    assert lines == in_lago == {"tts_characters": 8, "intents_handled": 10}   # 200 x 0.04, 5 x 2


def lago_config(database, lago, tmp_path) -> CloudConfig:
    return CloudConfig(data_dir=tmp_path, database_url=database.url, secret_key="s" * 32,
                       lago_api_url=lago.url, lago_api_key=lago.api_key)


def test_a_plan_lago_refuses_is_reported_and_the_others_go_on(database, lago, gateway, tmp_path):
    with database.sessions() as db:
        create_plan(db, plan_spec("team", name="Team", monthly_price=9900))
        db.commit()
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 1, tts=1))
    lago.set_fault("400", times=1, after=7)          # metrics listed and made; the first plan (pro) refused
    report = sync(database, gateway)
    assert report.failures and report.failures[0].startswith("plan pro: ")
    assert "HTTP 400" in report.failures[0]
    assert "team" in report.plans_pushed
    with database.sessions() as db:
        panel = lago_panel(lago_config(database, lago, tmp_path), PlatformScope(db), ["EUR"])
    assert (panel.plans, panel.plans_pushed) == (2, 1)
    assert panel.plans_refused == [("pro", "creating plan pro: Lago refused it (HTTP 400 Bad Request)")]
    assert sync(database, gateway).plans_pushed == ["pro"]       # tried again, accepted
    with database.sessions() as db:
        panel = lago_panel(lago_config(database, lago, tmp_path), PlatformScope(db), ["EUR"])
    assert (panel.plans, panel.plans_pushed, panel.plans_refused) == (2, 2, [])
    assert lago.events_of(sub_id)


def test_a_billable_metric_lago_refuses_stops_the_pass_with_the_reason_and_nothing_is_lost(
        database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2, tts=3))
    lago.set_fault("400", times=1, after=1)          # metrics listed; creating the first one refused
    report = sync(database, gateway)
    assert not report.ok and "creating billable metric sessions" in report.error
    assert "HTTP 400" in report.error and lago.events_of() == []
    report = sync(database, gateway)
    assert report.ok, str(report)
    assert len(lago.events_of(sub_id)) == 2 * 3


def usage_in(period, devices, count: int, day: int = 5, **values):
    base = period.start + timedelta(days=day, hours=1)
    return [usage_row(devices[i % len(devices)], base + timedelta(minutes=i),
                      base + timedelta(minutes=i, seconds=3), **values) for i in range(count)]


def free_plan(database):
    with database.sessions() as db:
        plan = create_plan(db, {"name": "Trial", "code": "trial", "currency": None, "monthly_price": 0,
                                "meters": {"intents_handled": {"included": 100, "hard_limit": 100}}})
        db.commit()
        return plan.id


def plan_id(database, code: str):
    with database.sessions() as db:
        return PlatformScope(db).first(Plan, Plan.code == code).id


def close(database, tenant_id, period, change_to=None, cancelling=False):
    with database.sessions() as db:
        if change_to is not None:
            change_plan(db, tenant_id, change_to, now=period.start + timedelta(days=9))
        if cancelling:
            cancel(db, tenant_id, now=period.start + timedelta(days=9))
        close_period(db, tenant_id, period, now=period.end)
        db.commit()


def test_a_tenant_on_a_free_plan_is_not_in_lago_and_its_usage_is_not_sent(database, lago, gateway):
    free_plan(database)
    tenant_id, devices, sub_id = subscribed_tenant(database, code="trial")
    store(database, tenant_id, usage_in_march(devices, 2, tts=1))
    report = sync(database, gateway)
    assert report.ok, str(report)
    assert "trial" not in lago.plans and str(tenant_id) not in lago.customers
    assert lago.events_of() == [] and report.queued == report.pending == 0


def test_first_month_is_not_prorated_in_lago(database, lago, gateway):
    tenant_id, _, sub_id = subscribed_tenant(database)      # subscribed on March 3rd
    sync(database, gateway)
    assert lago.subscriptions[sub_id]["subscription_at"] == MARCH.start.isoformat()


def test_moving_to_a_free_plan_ends_the_lago_subscription_after_its_last_usage(database, lago, gateway):
    free = free_plan(database)
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)                                    # Lago bills March on pro
    paid = usage_in_march(devices, 2, tts=3)
    store(database, tenant_id, paid)
    close(database, tenant_id, MARCH, change_to=free)          # April is on the free plan
    april = MARCH.next()
    store(database, tenant_id, usage_in(april, devices, 2, day=0, tts=9))   # free: never sent
    late = usage_in_march(devices, 1, tts=4)                   # March usage arriving on April 2nd
    late[0]["received_at"] = april.start + timedelta(days=1)

    report = sync(database, gateway, now=april.start + timedelta(days=1, hours=1))
    assert report.ok, str(report)
    assert lago.subscriptions[sub_id]["status"] == "active"     # the grace window is still open
    store(database, tenant_id, late)
    report = sync(database, gateway, now=april.start + timedelta(days=2))
    assert lago.subscriptions[sub_id]["status"] == "active"

    report = sync(database, gateway, now=april.start + timedelta(hours=72))
    assert report.ok and lago.subscriptions[sub_id]["status"] == "terminated"
    sent = {e.transaction_id.split(":")[0] for e in lago.events_of(sub_id)}
    assert sent == {str(r["event_id"]) for r in paid + late}     # March's, the late one included; no April


def test_back_on_a_paid_plan_after_a_free_one_is_a_new_lago_subscription_from_that_period(
        database, lago, gateway):
    free = free_plan(database)
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)
    close(database, tenant_id, MARCH, change_to=free)
    april, may = MARCH.next(), MARCH.next().next()
    store(database, tenant_id, usage_in(april, devices, 2, tts=9))          # on the free plan
    sync(database, gateway, now=april.start + timedelta(days=10))
    close(database, tenant_id, april, change_to=plan_id(database, "pro"))  # May: paid again
    may_rows = usage_in(may, devices, 3, tts=2)
    store(database, tenant_id, may_rows)

    report = sync(database, gateway, now=may.start + timedelta(days=10))
    assert report.ok, str(report)
    again = lago.subscriptions[f"{sub_id}-2"]
    assert (again["status"], again["plan_code"], again["subscription_at"]) == (
        "active", "pro", may.start.isoformat())
    assert lago.subscriptions[sub_id]["status"] == "terminated"
    sent = {e.transaction_id.split(":")[0] for e in lago.events_of(f"{sub_id}-2")}
    assert sent == {str(r["event_id"]) for r in may_rows}
    assert lago.events_of(sub_id) == []


def test_cancellation_sends_the_last_usage_before_lago_ends_the_subscription(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)
    last = usage_in(MARCH, devices, 3, day=20, tts=5)
    store(database, tenant_id, last)                           # not synced before the period closes
    close(database, tenant_id, MARCH, cancelling=True)
    lago.set_fault("503", times=1, after=1)                    # and Lago is down at the first pass
    assert sync(database, gateway, now=MARCH.end + timedelta(hours=1)).deferred
    report = sync(database, gateway, now=MARCH.end + timedelta(days=5))
    assert report.ok, str(report)
    assert lago.subscriptions[sub_id]["status"] == "terminated"
    sent = {e.transaction_id.split(":")[0] for e in lago.events_of(sub_id)}
    assert sent == {str(r["event_id"]) for r in last}


# --- events: batches, outages, duplicates, refusals -----------------------------------------------

def test_batches_hold_at_most_100_events_and_every_event_arrives_once(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 130, tts=7))   # 3 events each: 390
    report = sync(database, gateway)
    assert report.sent == 390 and report.pending == 0
    assert max(lago.batch_sizes) == 100 and sum(lago.batch_sizes) == 390
    assert len(lago.events_of(sub_id)) == 390 == lago.stored


@pytest.mark.parametrize("fault", ["500", "503", "drop", "drop_after_store"])
def test_an_outage_keeps_the_queue_and_the_retry_sends_nothing_twice(database, lago, gateway, fault, caplog):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)                                      # customer and metrics are in Lago
    rows = usage_in_march(devices, 4, stt_ms=250)
    store(database, tenant_id, rows)
    lago.set_fault(fault, times=1, after=1)                      # the metrics listing passes, the batch fails
    with caplog.at_level(logging.WARNING):
        report = sync(database, gateway, now=LATER)
    assert report.deferred and report.sent == 0 and report.pending == 12
    assert ("unavailable" in report.deferred) if fault in ("500", "503") else ("reached" in report.deferred)
    assert lago.api_key not in caplog.text and "deferred" in caplog.text
    assert len(lago.events_of()) == (12 if fault == "drop_after_store" else 0)

    again = sync(database, gateway, now=LATER)                  # too early: the backoff holds it back
    assert again.sent == 0 and again.pending == 12 and lago_batches(lago) == 1

    report = sync(database, gateway, now=LATER + timedelta(hours=2))
    assert report.pending == 0 and report.rejected == 0
    assert (report.sent, report.duplicates) == ((0, 12) if fault == "drop_after_store" else (12, 0))
    assert len(lago.events_of(sub_id)) == 12 == lago.stored
    assert {e.timestamp for e in lago.events_of(sub_id)} == {unix(r["ts"]) for r in rows}


def test_lago_not_answering_in_time_is_an_outage(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)
    store(database, tenant_id, usage_in_march(devices, 1))
    lago.set_fault("hang", times=1, after=1)
    report = sync(database, gateway)
    assert report.deferred and "did not answer in time" in report.deferred and report.pending == 2
    lago.set_fault(None)
    report = sync(database, gateway, now=LATER + timedelta(hours=2))
    assert report.sent == 2 and len(lago.events_of(sub_id)) == 2 == lago.stored


def test_events_lago_already_has_count_as_sent(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 6, tts=3))
    with database.sessions() as db:                              # queued, then half of them reach Lago
        sync_customer(db, gateway, tenant_id, LATER)
        ensure_metrics(gateway)
        assert enqueue(db, tenant_id, sub_id) == 18
        first = TenantScope(db, tenant_id).all(LagoEvent, order_by=[LagoEvent.timestamp, LagoEvent.id],
                                               limit=9)
        gateway.send_events([{"transaction_id": e.transaction_id, "external_subscription_id": sub_id,
                              "code": e.code, "timestamp": unix(e.timestamp), "properties": e.properties}
                             for e in first])
    assert lago.stored == 9
    report = sync(database, gateway)
    assert (report.sent, report.duplicates, report.pending) == (9, 9, 0)
    assert len(lago.events_of(sub_id)) == 18 == lago.stored


def test_an_event_lago_refuses_is_kept_as_rejected_with_the_reason(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2, tokens=100))
    sync(database, gateway)                                     # nothing yet: metrics and customer
    lago.events.clear()
    lago.stored = 0
    with database.sessions() as db:
        TenantScope(db, tenant_id).update(LagoEvent, [LagoEvent.code == "llm_tokens"], {"status": "pending"})
        TenantScope(db, tenant_id).update(LagoEvent, [LagoEvent.code != "llm_tokens"], {"status": "sent"})
        db.commit()
        lago.metrics.pop("llm_tokens")                          # Lago no longer knows the metric
        result = drain(db, gateway, tenant_id, LATER)
        assert result.rejected == 2 and result.sent == 0
        kept = rejected(db, tenant_id)
        assert {e.code for e in kept} == {"llm_tokens"}
        assert all("metric_not_found" in e.last_error and "HTTP 422" in e.last_error for e in kept)
        assert pending_count(db, tenant_id) == 0
    assert lago.events_of() == []
    assert sync(database, gateway).rejected == 0 and lago.events_of() == []   # never resent on its own
    with database.sessions() as db:                             # the operator restored the metric
        assert requeue_rejected(db, tenant_id) == 2
    report = sync(database, gateway)
    assert report.sent == 2 and {e.code for e in lago.events_of(sub_id)} == {"llm_tokens"}


def test_a_request_refused_as_a_whole_is_split_until_the_refused_event_is_found(database, lago, gateway):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    sync(database, gateway)
    store(database, tenant_id, usage_in_march(devices, 4))     # 8 events
    lago.set_fault("400", times=1, after=1)                     # the whole batch refused once
    report = sync(database, gateway)
    assert (report.sent, report.rejected) == (8, 0) and lago.batch_sizes[-2:] == [4, 4]
    store(database, tenant_id, usage_in_march(devices[:1], 1, tts=1, event_id=None)[:1])
    lago.set_fault("400", after=1)                              # refused every time: each event alone
    report = sync(database, gateway)
    lago.set_fault(None)
    assert report.rejected == 3 and report.sent == 0
    with database.sessions() as db:
        assert all("HTTP 400" in e.last_error for e in rejected(db, tenant_id))


def test_a_wrong_api_key_is_a_clear_error_and_loses_nothing(database, lago, caplog):
    tenant_id, devices, _ = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2))
    wrong = "sk-wrong-" + uuid.uuid4().hex
    with caplog.at_level(logging.DEBUG):
        report = sync(database, LagoGateway(lago.url, wrong))
    assert report.error and "refused the API key" in report.error and "401" in report.error
    assert wrong not in caplog.text and wrong not in report.error
    assert wrong not in repr(LagoGateway(lago.url, wrong))
    assert lago.customers == {} and lago.events_of() == []
    report = sync(database, LagoGateway(lago.url, lago.api_key))
    assert report.ok and report.sent == 4


def test_lago_unreachable_is_an_outage(database):
    tenant_id, devices, _ = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 1))
    closed = LagoStandIn()          # never started: its port refuses connections
    closed.server.server_close()
    report = sync(database, LagoGateway(closed.url, "key"))
    assert report.deferred and "could not be reached" in report.deferred


# --- read back and configuration --------------------------------------------------------------------

def test_invoices_and_mrr_are_read_back_from_lago(database, lago, gateway):
    tenant_id, _, _ = subscribed_tenant(database)
    other_id, _, _ = subscribed_tenant(database)
    sync(database, gateway)
    lago.issue_invoice(str(tenant_id), 5150, "EUR", "2026-04-01")
    lago.issue_invoice(str(tenant_id), 4900, "EUR", "2026-05-01")
    lago.issue_invoice(str(other_id), 1, "EUR", "2026-05-01")
    found = invoices(gateway, tenant_id)
    assert [(i.issuing_date, i.total_amount_cents, i.currency) for i in found] == [
        ("2026-05-01", 4900, "EUR"), ("2026-04-01", 5150, "EUR")]
    months = mrr(gateway, "EUR")
    assert len(months) == 12 and months[-1].amount_cents == 2 * 4900 and months[-1].currency == "EUR"


def test_lago_is_used_only_when_configured_and_its_key_is_masked(tmp_path):
    assert not load_config(tmp_path, environ={}).lago_configured
    config = load_config(tmp_path, environ={"VOXFLEET_LAGO_API_URL": "https://lago.example.com",
                                            "VOXFLEET_LAGO_API_KEY": "sk-secret-123"})
    assert config.lago_configured and "sk-secret-123" not in repr(config)
    with pytest.raises(Exception, match="lago_api_url"):
        load_config(tmp_path, environ={"VOXFLEET_LAGO_API_URL": "lago.example.com"})


def test_the_lago_sync_command_syncs_once_and_says_what_it_did(database, lago, tmp_path):
    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2))
    env = {"VOXFLEET_DATA_DIR": str(tmp_path / "cloud"), "VOXFLEET_DATABASE_URL": database.url}
    run = CliRunner()
    unconfigured = run.invoke(cloud, ["billing", "lago-sync"], env=env)
    assert unconfigured.exit_code == 2 and "Lago is not configured" in unconfigured.output

    env |= {"VOXFLEET_LAGO_API_URL": lago.url, "VOXFLEET_LAGO_API_KEY": "sk-wrong-key"}
    refused = run.invoke(cloud, ["billing", "lago-sync"], env=env)
    assert refused.exit_code == 1 and "refused the API key" in refused.output
    assert "sk-wrong-key" not in refused.output

    env["VOXFLEET_LAGO_API_KEY"] = lago.api_key
    done = run.invoke(cloud, ["billing", "lago-sync"], env=env)
    assert done.exit_code == 0, done.output
    assert "4 queued, 4 sent" in done.output and len(lago.events_of(sub_id)) == 4


# --- the property -------------------------------------------------------------------------------------

FAULTS = st.sampled_from([None, "500", "503", "drop", "drop_after_store", "drop_after_store"])
FAULTY = settings(PROPERTY, max_examples=20)
usage_specs = st.tuples(st.integers(0, 1), st.integers(0, 60 * 24 * 20), st.integers(0, 999_999),
                        st.integers(0, 90_000), st.integers(0, 400), st.integers(0, 3), st.integers(0, 5000))


@FAULTY
@given(specs=st.lists(usage_specs, min_size=1, max_size=14), data=st.data())
def test_lago_ends_with_exactly_the_distinct_events_whatever_the_faults(database, specs, data):
    """Any usage (duplicates included), delivered in any batches, synced by restarted syncers with
    Lago failing at any request: Lago ends with each distinct event once, at its original time."""
    database.wipe()
    stand_in = LagoStandIn().start()
    try:
        stand_in.add_plan("pro", 4900, "EUR")
        tenant_id, devices, sub_id = subscribed_tenant(database)
        pool = []
        for device, minutes, micros, stt_ms, tts, intents, tokens in specs:
            ts = MARCH.start + timedelta(days=3, minutes=minutes, microseconds=micros)
            pool.append(usage_row(devices[device], ts, ts + timedelta(seconds=2), stt_ms=stt_ms, tts=tts,
                                  intents=intents, tokens=tokens))
        sync(database, LagoGateway(stand_in.url, stand_in.api_key))  # metrics and customer first: each
        # pass then lists the metrics (1 request) and sends batches, where the faults below mostly land.
        deliveries = pool + data.draw(st.lists(st.sampled_from(pool), max_size=6), label="redelivered")
        deliveries = data.draw(st.permutations(deliveries), label="order")
        now = LATER
        start = 0
        while start < len(deliveries):
            cut = data.draw(st.integers(start + 1, len(deliveries)), label="delivered up to")
            store(database, tenant_id, deliveries[start:cut])
            start = cut
            fault = data.draw(FAULTS, label="fault")
            stand_in.set_fault(fault, times=data.draw(st.integers(1, 3), label="failed requests"),
                               after=data.draw(st.integers(0, 3), label="requests before the fault"))
            gateway = LagoGateway(stand_in.url, stand_in.api_key)     # a restarted syncer
            size = data.draw(st.sampled_from([1, 4, 100]), label="batch size")
            sync(database, gateway, now=now, batch_size=size)
            now += timedelta(hours=2)
        stand_in.set_fault(None)
        for _ in range(3):
            report = sync(database, LagoGateway(stand_in.url, stand_in.api_key), now=now)
            now += timedelta(hours=2)
        assert report.ok and report.pending == 0, str(report)
        with database.sessions() as db:                          # and our side agrees: all sent, none refused
            statuses = [e.status for e in TenantScope(db, tenant_id).all(LagoEvent)]
        assert set(statuses) == {"sent"}

        got = stand_in.events_of(sub_id)
        assert stand_in.stored == len(got)                      # nothing was ever stored twice
        expected = {}
        for row in pool:
            codes = {"sessions", "active_devices"} | {c for c, v in (
                ("stt_seconds", row["stt_seconds"]), ("tts_characters", row["tts_characters"]),
                ("intents_handled", row["intents_handled"]), ("llm_tokens", row["llm_tokens"])) if v}
            for code in codes:
                expected[f"{row['event_id']}:{code}"] = unix(row["ts"])
        assert {e.transaction_id: e.timestamp for e in got} == expected
        total_stt = sum(Decimal(e.properties["stt_seconds"]) for e in got if e.code == "stt_seconds")
        assert total_stt == sum(Decimal(r["stt_seconds"]).quantize(Decimal("0.001")) for r in pool)
        assert sum(e.properties["tts_characters"] for e in got if e.code == "tts_characters") == sum(
            r["tts_characters"] for r in pool)
    finally:
        stand_in.stop()



# --- the operator's billing page when Lago bills ----------------------------------------------------

def test_operator_billing_page_shows_lagos_mrr_and_queue_and_says_when_lago_is_down(database, lago, gateway,
                                                                                   tmp_path):
    from cloud import admin
    from tests.cloud.api.test_fixtures import close_app, make_app
    from tests.cloud.web.tenant.test_fixtures import Portal

    tenant_id, devices, sub_id = subscribed_tenant(database)
    store(database, tenant_id, usage_in_march(devices, 2, tts=10))
    sync(database, gateway)
    store(database, tenant_id, usage_in_march(devices, 1, tts=5))   # queued, not sent yet
    with database.sessions() as db:
        enqueue(db, tenant_id, sub_id)
        db.commit()
        pending = pending_count(db, tenant_id)
        operator = admin.create_operator(db, "op-lago@example.com", "a-long-password-1")
        db.commit()
        operator_id = operator.id

    app = make_app(database.url, tmp_path, lago_api_url=lago.url, lago_api_key=lago.api_key)
    try:
        client = Portal(app).client(operator_id)
        page = client.get("/operator/billing").get_data(as_text=True)
        # The stand-in's MRR for this month: one active "pro" subscription at 49.00 EUR.
        assert 'data-stat="lago-mrr-EUR"><div class="value">49.00 EUR' in page
        assert f"Events waiting: {pending}" in page and pending > 0
        assert "sent: " in page and lago.api_key not in page
        assert "Plans in Lago: 1 of 1" in page and "data-lago-refused-plans" not in page

        lago.set_fault("503")
        down = client.get("/operator/billing")
        assert down.status_code == 200                       # the ledger's figures still show
        assert "Lago's figures are unavailable" in down.get_data(as_text=True)
        assert lago.api_key not in down.get_data(as_text=True)
    finally:
        lago.set_fault(None)
        close_app(app)
