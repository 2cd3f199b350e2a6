"""The billing scheduler on SQLite and PostgreSQL: ended periods become one draft each, scheduled plan
changes and cancellations apply at the boundary, drafts take late usage until the grace period ends and
never after, thresholds are announced once even with two schedulers racing, and a scheduler stopped at
any point and started again neither skips nor doubles anything."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from click.testing import CliRunner

from cloud.billing import Period
from cloud.billing import scheduler as scheduler_module
from cloud.billing.invoices import lines, mark_paid
from cloud.billing.meter import meter
from cloud.billing.plans import create_plan, update_plan
from cloud.billing.scheduler import BillingScheduler, check_usage, close_due, settle_drafts
from cloud.billing.subscriptions import PeriodClosing, cancel, change_plan, resume, subscribe
from cloud.cli import cloud
from cloud.config import load_config
from cloud.db import AuditEntry, Invoice, Subscription, UsageAlert
from cloud.db.base import utcnow
from cloud.db.session import make_engine
from cloud.db.webhooks import Webhook, WebhookDelivery
from cloud.migrations import upgrade
from cloud.scoping import PlatformScope, TenantScope, session_factory
from tests.cloud.billing.test_meter import MARCH, make_tenant, store, usage_row
from tests.conftest import free_port

APRIL, MAY = MARCH.next(), MARCH.next().next()
GRACE = timedelta(hours=72)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def pro(db, code: str = "pro", price: int = 4900):
    """0 included intents (every intent is overage, 2 cents), 1000 TTS characters included (0.1 cent)."""
    return create_plan(db, {"name": code.title(), "code": code, "currency": "EUR", "monthly_price": price,
                            "meters": {"intents_handled": {"included": 0, "overage_price": "2"},
                                       "tts_characters": {"included": 1000, "overage_price": "0.1",
                                                          "hard_limit": 2000}}})


def scheduler(database) -> BillingScheduler:
    return BillingScheduler(database.sessions, grace=GRACE)


def invoices(database) -> list[tuple[uuid.UUID, str, str, int]]:
    with database.sessions() as db:
        return sorted((i.tenant_id, Period(i.period_start).label, i.status, i.total)
                      for i in PlatformScope(db).all(Invoice))


def audited(database) -> Counter:
    with database.sessions() as db:
        return Counter(e.action for e in PlatformScope(db).all(AuditEntry) if e.action.startswith(
            ("invoice.", "usage.")))


def test_a_pass_closes_the_period_applies_the_plan_change_and_finalizes_only_after_the_grace(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        first, cheaper = pro(db), pro(db, "basic", 900)
        subscribe(db, tenant_id, first.id, at=MARCH.start + timedelta(days=3))
        change_plan(db, tenant_id, cheaper.id, now=MARCH.start + timedelta(days=4))
        db.commit()
        ids = first.id, cheaper.id
    during = MARCH.start + timedelta(days=5)
    store(database, tenant_id, [usage_row(device, during, during, intents=3)])
    runner = scheduler(database)

    report = runner.run_once(MARCH.end - timedelta(minutes=1))      # March not over: nothing to close
    assert (report.closed, invoices(database)) == ([], [])
    report = runner.run_once(MARCH.end + timedelta(hours=1))
    assert report.closed == [(tenant_id, "2026-03")]
    assert invoices(database) == [(tenant_id, "2026-03", "draft", 4906)]   # fee + 3 intents x 2 cents
    with database.sessions() as db:
        sub = TenantScope(db, tenant_id).first(Subscription)
        assert (sub.plan_id, sub.next_plan_id, sub.current_period_start) == (ids[1], None, APRIL.start)
        assert TenantScope(db, tenant_id).first(Invoice).plan_id == ids[0]   # March billed on its plan

    # Late usage for March, received during the grace window: the draft takes it in.
    late = MARCH.end + timedelta(hours=10)
    store(database, tenant_id, [usage_row(device, MARCH.end - timedelta(minutes=5), late, intents=2)])
    report = runner.run_once(MARCH.end + timedelta(hours=11))
    assert (report.recomputed, report.finalized) == ([(tenant_id, "2026-03")], [])
    assert invoices(database) == [(tenant_id, "2026-03", "draft", 4910)]
    with database.sessions() as db:
        invoice = TenantScope(db, tenant_id).first(Invoice)
        got = [(li.position, li.kind, li.meter, li.quantity, li.amount)
               for li in lines(db, tenant_id, invoice.id)]
    assert got == [(0, "fee", None, "1", 4900), (1, "overage", "intents_handled", "5", 10)]

    report = runner.run_once(MARCH.end + GRACE)
    assert report.finalized == [(tenant_id, "2026-03")]
    assert invoices(database) == [(tenant_id, "2026-03", "finalized", 4910)]

    # After finalization a late event stays in the meter but the invoice no longer changes.
    store(database, tenant_id, [usage_row(device, MARCH.end - timedelta(minutes=1), MARCH.end + GRACE,
                                          intents=4)])
    report = runner.run_once(MARCH.end + GRACE + timedelta(hours=1))
    assert (report.closed, report.recomputed, report.finalized) == ([], [], [])
    assert invoices(database) == [(tenant_id, "2026-03", "finalized", 4910)]
    with database.sessions() as db:
        assert meter(db, tenant_id, MARCH).intents_handled == 9
    assert audited(database)["invoice.draft"] == 1
    assert audited(database)["invoice.finalized"] == 1


def test_a_cancellation_ends_the_subscription_after_its_last_invoice(database):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)
        cancel(db, tenant_id, now=MARCH.start)
        db.commit()
    runner = scheduler(database)
    runner.run_once(APRIL.start + GRACE)
    runner.run_once(MAY.end + GRACE)
    assert invoices(database) == [(tenant_id, "2026-03", "finalized", 4900)]
    with database.sessions() as db:
        sub = TenantScope(db, tenant_id).first(Subscription)
        assert (sub.status, sub.ended_at) == ("canceled", MARCH.end)


def test_a_scheduler_that_was_down_for_months_closes_each_period_once_in_order(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)
        db.commit()
    for period, intents in ((MARCH, 1), (APRIL, 2), (MAY, 3)):
        at = period.start + timedelta(days=2)
        store(database, tenant_id, [usage_row(device, at, at, intents=intents)])
    now = MAY.end + timedelta(days=31)                  # 2 July: March to June have ended
    report = scheduler(database).run_once(now)
    assert [label for _, label in report.closed] == ["2026-03", "2026-04", "2026-05", "2026-06"]
    assert invoices(database) == [(tenant_id, "2026-03", "finalized", 4902),
                                  (tenant_id, "2026-04", "finalized", 4904),
                                  (tenant_id, "2026-05", "finalized", 4906),
                                  (tenant_id, "2026-06", "draft", 4900)]
    assert scheduler(database).run_once(now).closed == []
    assert len(invoices(database)) == 4


def test_thresholds_are_checked_for_tenants_with_new_usage_and_announced_once(database):
    with database.sessions() as db:
        busy, (device, _) = make_tenant(db)
        quiet, _ = make_tenant(db)
        for i, tenant_id in enumerate((busy, quiet)):
            subscribe(db, tenant_id, pro(db, f"p{i}").id, at=MARCH.start)
        TenantScope(db, busy).add(Webhook(url="https://example.test/h", events=["usage.threshold"],
                                          secret="s"))
        db.commit()
    runner = scheduler(database)
    t0 = MARCH.start + timedelta(days=1)
    assert sorted(runner.run_once(t0).checked) == sorted([busy, quiet])   # first pass: everyone
    store(database, busy, [usage_row(device, t0, t0 + timedelta(minutes=1), tts=850)])
    report = runner.run_once(t0 + timedelta(minutes=2))
    assert report.checked == [busy]                                         # only who had new usage
    store(database, busy, [usage_row(device, t0, t0 + timedelta(minutes=3), tts=150)])
    runner.run_once(t0 + timedelta(minutes=4))
    runner.run_once(t0 + timedelta(minutes=5))
    # A restarted scheduler checks everyone again, and announces nothing twice.
    assert sorted(scheduler(database).run_once(t0 + timedelta(minutes=6)).checked) == sorted([busy, quiet])
    with database.sessions() as db:
        alerts = sorted((a.tenant_id, a.meter, a.threshold) for a in PlatformScope(db).all(UsageAlert))
        deliveries = TenantScope(db, busy).count(WebhookDelivery)
    assert alerts == [(busy, "tts_characters", 80), (busy, "tts_characters", 100)]
    assert deliveries == 2
    assert audited(database)["usage.threshold"] == 2


def _world(database) -> tuple[list[uuid.UUID], dict]:
    """Two tenants on different plans with usage in March and April; what a clean run must produce
    at ``NOW`` (mid-May, March's grace over, April's not)."""
    tenants = []
    with database.sessions() as db:
        for i, intents in enumerate((3, 7)):
            tenant_id, (device, _) = make_tenant(db)
            plan = pro(db, f"plan{i}", 1000 * (i + 1))
            subscribe(db, tenant_id, plan.id, at=MARCH.start)
            db.commit()
            tenants.append((tenant_id, device, intents))
    for tenant_id, device, intents in tenants:
        for period in (MARCH, APRIL):
            at = period.start + timedelta(days=4)
            store(database, tenant_id, [usage_row(device, at, at, intents=intents, tts=900)])
    (a, _, _), (b, _, _) = tenants
    expected = sorted([(a, "2026-03", "finalized", 1006), (a, "2026-04", "draft", 1006),
                       (b, "2026-03", "finalized", 2014), (b, "2026-04", "draft", 2014)])
    audit = {"invoice.draft": 4, "invoice.finalized": 2, "usage.threshold": 2}
    return [a, b], {"invoices": expected, "audit": audit}


NOW = APRIL.end + timedelta(hours=2)
# Where a scheduler dies: after the usage check, after closing one period, after closing all of them,
# after settling one draft (finalized), after a whole pass.
STOPS = {
    "after thresholds": lambda s: check_usage(s, None, NOW),
    "after one close": lambda s: close_due(s, NOW, limit=1),
    "after every close": lambda s: close_due(s, NOW),
    "after one draft settled": lambda s: (close_due(s, NOW), settle_drafts(s, NOW, GRACE, limit=1)),
    "after a pass": lambda s: BillingScheduler(s, grace=GRACE).run_once(NOW),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_a_scheduler_stopped_at_any_point_and_restarted_neither_skips_nor_doubles(database, stop):
    tenants, expected = _world(database)
    STOPS[stop](database.sessions)
    # The replacement scheduler starts from nothing in memory, then runs twice more.
    for _ in range(2):
        report = scheduler(database).run_once(NOW)
        assert report.failures == 0
    assert invoices(database) == expected["invoices"]
    counts = audited(database)
    assert {k: counts[k] for k in expected["audit"]} == expected["audit"]
    with database.sessions() as db:
        alerts = sorted((a.tenant_id, Period(a.period_start).label, a.threshold)
                        for a in PlatformScope(db).all(UsageAlert))
    # 900 of 1000 TTS characters in April (still open at NOW) crossed 80 % for both tenants; March is
    # no longer an open period at NOW, so it is not checked.
    assert [a for a in alerts if a[1] == "2026-04"] == sorted((t, "2026-04", 80) for t in tenants)


def test_a_paid_or_voided_invoice_is_left_alone(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)
        db.commit()
    runner = scheduler(database)
    runner.run_once(MARCH.end + GRACE)
    with database.sessions() as db:
        invoice = TenantScope(db, tenant_id).first(Invoice)
        mark_paid(db, tenant_id, invoice.id)
        db.commit()
    late = usage_row(device, MARCH.end - timedelta(hours=1), MARCH.end + GRACE, intents=9)
    store(database, tenant_id, [late])
    report = runner.run_once(MARCH.end + GRACE + timedelta(hours=1))
    assert (report.recomputed, report.finalized, report.failures) == ([], [], 0)
    assert invoices(database) == [(tenant_id, "2026-03", "paid", 4900)]


# --- two schedulers racing, on PostgreSQL -------------------------------------------------------------

def _racing_world(pg, tenants: int = 3) -> list[uuid.UUID]:
    """Tenants subscribed since last month, over 100 % of their TTS in this one: both thresholds are
    due, and last month's period is due to close (and, with no grace, to finalize)."""
    now = utcnow()
    this, last = Period.of(now), Period.of(now).previous()
    made = []
    with pg.sessions() as db:
        for i in range(tenants):
            tenant_id, (device, _) = make_tenant(db, paired_at=last.start - timedelta(days=30))
            subscribe(db, tenant_id, pro(db, f"race{i}").id, at=last.start)
            TenantScope(db, tenant_id).add(Webhook(url="https://example.test/h", events=["usage.threshold"],
                                                   secret="s"))
            db.commit()
            made.append((tenant_id, device))
    for tenant_id, device in made:
        at = this.start if now - this.start < timedelta(minutes=1) else now - timedelta(seconds=30)
        before = last.start + timedelta(days=1)
        store(pg, tenant_id, [usage_row(device, at, at, tts=1200, intents=1),
                              usage_row(device, before, before, intents=2)])
    return [t for t, _ in made]


def _announced_once(pg, tenants: list[uuid.UUID]) -> None:
    with pg.sessions() as db:
        platform = PlatformScope(db)
        alerts = Counter((a.tenant_id, a.threshold) for a in platform.all(UsageAlert))
        deliveries = Counter((d.tenant_id, d.delivery_key) for d in platform.all(WebhookDelivery))
        invoiced = Counter(i.tenant_id for i in platform.all(Invoice))
        statuses = {i.status for i in platform.all(Invoice)}
    assert alerts == {(t, th): 1 for t in tenants for th in (80, 100)}
    assert sorted(Counter(t for t, _ in deliveries).values()) == [2] * len(tenants)
    assert set(deliveries.values()) == {1}
    assert invoiced == dict.fromkeys(tenants, 1) and statuses == {"finalized"}
    counts = audited(pg)
    assert (counts["usage.threshold"], counts["invoice.draft"], counts["invoice.finalized"]) == \
        (2 * len(tenants), len(tenants), len(tenants))


def test_two_scheduler_threads_racing_on_postgresql_announce_and_invoice_once(pg):
    tenants = _racing_world(pg)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            runner = BillingScheduler(pg.sessions, grace=timedelta(0))
            start.wait()
            assert runner.run_once().failures == 0
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    _announced_once(pg, tenants)


def test_two_scheduler_processes_racing_on_postgresql_announce_and_invoice_once(pg, tmp_path):
    tenants = _racing_world(pg)
    (tmp_path / "cloud.toml").write_text(f'database_url = "{pg.url}"\ninvoice_grace_hours = 0\n')
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-c", "from voxfleet.cli import main; main()",
               "cloud", "billing", "run", "--once"]
    runs = [subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=180) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    assert all("invoice(s) finalized" in out for out, _ in outputs)
    _announced_once(pg, tenants)


def test_close_periods_command_closes_as_of_a_given_time_and_refuses_a_naive_one(database, tmp_path):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)
        db.commit()
    (tmp_path / "cloud.toml").write_text(f'database_url = "{database.url}"\n')

    def run(*args: str):
        return CliRunner().invoke(cloud, ["billing", "close-periods", "--data-dir", str(tmp_path), *args])

    refused = run("--at", "2026-04-02T00:00:00")
    assert refused.exit_code == 2 and "has no time zone" in refused.output
    assert invoices(database) == []
    done = run("--at", "2026-04-02T00:00:00Z")
    assert done.exit_code == 0, done.output
    assert done.stdout.split() == [str(tenant_id), "2026-03", "draft"]
    assert run("--at", "2026-04-02T00:00:00Z").stdout == ""                  # again: nothing more
    assert invoices(database) == [(tenant_id, "2026-03", "draft", 4900)]


def test_serve_runs_the_scheduler_as_a_thread_unless_told_not_to(tmp_path):
    from cloud.serve import start

    def configured(data_dir, **overrides):
        return load_config(data_dir, environ={}, http_port=free_port(), mqtt_port=free_port(),
                           billing_interval_s=1, **overrides)

    config = configured(tmp_path / "cloud")
    upgrade(config.database_url)
    sessions = session_factory(make_engine(config.database_url))
    with sessions() as db:
        tenant_id, _ = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)      # March (long over) is due to close
        db.commit()
    running = start(config)
    try:
        assert running.billing is not None and running.billing.thread.is_alive()
        march = (tenant_id, "2026-03", "finalized", 4900)    # closed, and finalized in the same pass
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and march not in _rows(sessions):
            time.sleep(0.2)
        assert march in _rows(sessions)
    finally:
        running.stop()
    assert not running.billing.thread.is_alive()
    quiet = start(configured(tmp_path / "other", billing_in_serve=False))
    try:
        assert quiet.billing is None
    finally:
        quiet.stop()


def _rows(sessions) -> list[tuple[uuid.UUID, str, str, int]]:
    with sessions() as db:
        return sorted((i.tenant_id, Period(i.period_start).label, i.status, i.total)
                      for i in PlatformScope(db).all(Invoice))


def test_the_scheduler_settings_come_from_the_environment_and_bad_ones_are_named(tmp_path):
    from cloud.config import ConfigError

    config = load_config(tmp_path, environ={"VOXFLEET_BILLING_INTERVAL_S": "15",
                                            "VOXFLEET_INVOICE_GRACE_HOURS": "24",
                                            "VOXFLEET_BILLING_IN_SERVE": "false"})
    assert (config.billing_interval_s, config.invoice_grace_hours, config.billing_in_serve) == (15, 24, False)
    d = load_config(tmp_path, environ={})
    assert (d.billing_interval_s, d.invoice_grace_hours, d.billing_in_serve) == (60, 72, True)
    with pytest.raises(ConfigError, match=r"invoice_grace_hours: .*greater than or equal to 0 "
                                          r"\(from \$VOXFLEET_INVOICE_GRACE_HOURS\)"):
        load_config(tmp_path, environ={"VOXFLEET_INVOICE_GRACE_HOURS": "-1"})
    with pytest.raises(ConfigError, match="billing_interval_s"):
        load_config(tmp_path, environ={"VOXFLEET_BILLING_INTERVAL_S": "soon"})


# --- terms kept at the close, changes while a period waits to close, the due list -------------------

def _draft_lines(database, tenant_id, period: Period) -> list[tuple[str, str | None, str, str, int]]:
    with database.sessions() as db:
        invoice = TenantScope(db, tenant_id).first(Invoice, Invoice.period_start == period.start)
        return [(li.kind, li.meter, li.quantity, li.unit_price, li.amount)
                for li in lines(db, tenant_id, invoice.id)]


def test_a_plan_edited_after_the_close_does_not_reprice_the_closed_draft(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        plan = pro(db)
        subscribe(db, tenant_id, plan.id, at=MARCH.start)
        db.commit()
        plan_id = plan.id
    during = MARCH.start + timedelta(days=5)
    store(database, tenant_id, [usage_row(device, during, during, intents=3)])
    runner = scheduler(database)
    assert runner.run_once(MARCH.end + timedelta(hours=1)).closed == [(tenant_id, "2026-03")]
    # On the 2nd the operator raises the fee and the overage price; then March's late usage arrives.
    with database.sessions() as db:
        update_plan(db, plan_id, {"name": "Pro 2", "code": "pro", "currency": "EUR", "monthly_price": 9900,
                                  "meters": {"intents_handled": {"included": 0, "overage_price": "5"}}})
        db.commit()
    late = MARCH.end + timedelta(days=1)
    store(database, tenant_id, [usage_row(device, MARCH.end - timedelta(minutes=5), late, intents=2)])
    report = runner.run_once(late + timedelta(hours=1))
    assert report.recomputed == [(tenant_id, "2026-03")]           # the late usage is taken in ...
    assert _draft_lines(database, tenant_id, MARCH) == [            # ... at March's prices, as closed
        ("fee", None, "1", "4900", 4900), ("overage", "intents_handled", "5", "2", 10)]
    assert runner.run_once(MARCH.end + GRACE).finalized == [(tenant_id, "2026-03")]
    assert invoices(database) == [(tenant_id, "2026-03", "finalized", 4910)]
    # April, closed after the edit, is on the new terms.
    in_april = APRIL.start + timedelta(days=2)
    store(database, tenant_id, [usage_row(device, in_april, in_april, intents=1)])
    runner.run_once(APRIL.end + timedelta(hours=1))
    assert _draft_lines(database, tenant_id, APRIL) == [
        ("fee", None, "1", "9900", 9900), ("overage", "intents_handled", "1", "5", 5)]
    with database.sessions() as db:
        april = TenantScope(db, tenant_id).first(Invoice, Invoice.period_start == APRIL.start)
        assert april.terms["monthly_price"] == 9900 and april.terms["name"] == "Pro 2"


def test_a_draft_closed_before_terms_were_kept_is_priced_from_its_plan(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        subscribe(db, tenant_id, pro(db).id, at=MARCH.start)
        db.commit()
    runner = scheduler(database)
    runner.run_once(MARCH.end + timedelta(hours=1))
    with database.sessions() as db:                                  # as migration 0012 leaves old rows
        TenantScope(db, tenant_id).first(Invoice).terms = None
        db.commit()
    late = MARCH.end + timedelta(hours=2)
    store(database, tenant_id, [usage_row(device, MARCH.end - timedelta(minutes=1), late, intents=4)])
    assert runner.run_once(late + timedelta(minutes=1)).failures == 0
    assert invoices(database) == [(tenant_id, "2026-03", "draft", 4908)]


def test_a_downgrade_applied_at_close_does_not_announce_thresholds_the_old_plan_never_reached(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        big = create_plan(db, {"name": "Big", "code": "big", "currency": "EUR", "monthly_price": 9900,
                               "meters": {"tts_characters": {"included": 1000}}})
        small = create_plan(db, {"name": "Small", "code": "small", "currency": "EUR", "monthly_price": 900,
                                 "meters": {"tts_characters": {"included": 100}}})
        subscribe(db, tenant_id, big.id, at=MARCH.start)
        change_plan(db, tenant_id, small.id, now=MARCH.start + timedelta(days=20))
        db.commit()
    during = MARCH.start + timedelta(days=21)
    store(database, tenant_id, [usage_row(device, during, during, tts=500)])     # 50 % of Big's 1000
    runner = scheduler(database)
    runner.run_once(MARCH.end + timedelta(hours=1))                 # checks March on Big, then closes it
    with database.sessions() as db:
        assert TenantScope(db, tenant_id).first(Subscription).plan_id == small.id
    # Late March usage while March's draft is open: 600 of Big's 1000 (60 %), yet 600 % of Small's 100.
    late = MARCH.end + timedelta(hours=2)
    store(database, tenant_id, [usage_row(device, MARCH.end - timedelta(minutes=1), late, tts=100)])
    in_april = APRIL.start + timedelta(hours=3)
    store(database, tenant_id, [usage_row(device, in_april, in_april, tts=90)])   # 90 % of Small's 100
    report = runner.run_once(in_april + timedelta(minutes=1))
    assert tenant_id in report.checked
    with database.sessions() as db:
        alerts = sorted((Period(a.period_start).label, a.meter, a.threshold)
                        for a in TenantScope(db, tenant_id).all(UsageAlert))
    assert alerts == [("2026-04", "tts_characters", 80)]


def test_plan_changes_and_cancellations_wait_while_an_ended_period_is_not_closed(database):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        first, other = pro(db), pro(db, "other", 900)
        subscribe(db, tenant_id, first.id, at=MARCH.start)
        cancel(db, tenant_id, now=MARCH.start + timedelta(days=1))
        db.commit()
        ids = first.id, other.id
    waiting = APRIL.start + timedelta(seconds=30)                    # March over, not closed yet
    for action in (lambda db: change_plan(db, tenant_id, ids[1], now=waiting),
                   lambda db: cancel(db, tenant_id, now=waiting),
                   lambda db: resume(db, tenant_id, now=waiting)):
        with database.sessions() as db, pytest.raises(PeriodClosing, match="2026-03 has ended"):
            action(db)
    with database.sessions() as db:
        sub = TenantScope(db, tenant_id).first(Subscription)
        assert (sub.next_plan_id, sub.cancel_at_period_end) == (None, True)
        resume(db, tenant_id, now=MARCH.end - timedelta(seconds=1))   # still March: allowed
        db.commit()
    close_due(database.sessions, waiting)
    with database.sessions() as db:                                  # closed: April can change again
        change_plan(db, tenant_id, ids[1], now=waiting)
        db.commit()
        sub = TenantScope(db, tenant_id).first(Subscription)
        assert (sub.status, sub.plan_id, sub.next_plan_id, sub.current_period_start) == \
            ("active", ids[0], ids[1], APRIL.start)


def test_close_due_lists_the_due_subscriptions_once_and_closes_each_in_order(database, monkeypatch):
    tenants = []
    with database.sessions() as db:
        plan = pro(db)
        for _ in range(3):
            tenant_id, _ = make_tenant(db, devices=0)
            subscribe(db, tenant_id, plan.id, at=MARCH.start)
            tenants.append(tenant_id)
        db.commit()
    calls = []
    listed = scheduler_module._due
    monkeypatch.setattr(scheduler_module, "_due", lambda db, now: calls.append(now) or listed(db, now))
    closed, failures = close_due(database.sessions, MAY.start + timedelta(hours=1))
    assert (len(calls), failures) == (1, 0)
    assert sorted(closed) == sorted((t, label) for t in tenants for label in ("2026-03", "2026-04"))
    for tenant_id in tenants:                                        # each tenant's months oldest first
        assert [label for t, label in closed if t == tenant_id] == ["2026-03", "2026-04"]
    assert close_due(database.sessions, MAY.start + timedelta(hours=1)) == ([], 0)


def test_close_periods_refuses_a_time_in_the_future(database, tmp_path):
    with database.sessions() as db:
        tenant_id, _ = make_tenant(db)
        plan = pro(db)
        subscribe(db, tenant_id, plan.id, at=utcnow())
        cancel(db, tenant_id)
        db.commit()
    (tmp_path / "cloud.toml").write_text(f'database_url = "{database.url}"\n')
    ahead = (utcnow() + timedelta(days=70)).isoformat()
    refused = CliRunner().invoke(cloud, ["billing", "close-periods", "--data-dir", str(tmp_path),
                                         "--at", ahead])
    assert refused.exit_code == 2 and "is in the future" in refused.output
    assert invoices(database) == []
    with database.sessions() as db:                                  # the cancellation waits for its period
        assert TenantScope(db, tenant_id).first(Subscription).status == "active"
