"""Metering on SQLite and PostgreSQL: exactly once, whatever the network and the metering process did.

The property: for any delivery of usage events -- duplicated, reordered, split into batches, with the
metering restarted (a fresh session) between any two batches -- the metered totals of every period
equal the sums over the distinct events, each counted in the period of its (clamped) timestamp.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.billing import Period
from cloud.billing.limits import check_thresholds, delivery_key, limit_state
from cloud.billing.meter import meter
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import AuditEntry, Device, Project, Tenant, UsageAlert, UsageRecord, VoiceSession
from cloud.db.webhooks import Webhook, WebhookDelivery
from cloud.scoping import PlatformScope, TenantScope

PAIRED = datetime(2026, 1, 15, tzinfo=UTC)
MARCH = Period.parse("2026-03")
PERIODS = [Period.parse(p) for p in ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05")]
PROPERTY = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_tenant(db, devices: int = 2, paired_at: datetime = PAIRED) -> tuple[uuid.UUID, list[uuid.UUID]]:
    tenant = PlatformScope(db).add(Tenant(name="Acme", slug=f"acme-{uuid.uuid4().hex[:6]}"))
    PlatformScope(db).flush()
    scope = TenantScope(db, tenant.id)
    project = scope.add(Project(name="Default", is_default=True))
    scope.flush()
    ids = []
    for i in range(devices):
        device = scope.add(Device(project_id=project.id, name=f"d{i}", paired_at=paired_at,
                                  device_key=f"k-{uuid.uuid4().hex[:12]}"))
        scope.flush()
        ids.append(device.id)
    db.commit()
    return tenant.id, ids


def usage_row(device_id: uuid.UUID, ts: datetime, received_at: datetime, event_id: uuid.UUID | None = None,
              stt_ms: int = 0, tts: int = 0, intents: int = 0, tokens: int = 0) -> dict:
    return {"device_id": device_id, "event_id": event_id or uuid.uuid4(), "ts": ts,
            "received_at": received_at,
            "wake_words": 1, "stt_seconds": stt_ms / 1000, "tts_characters": tts, "tts_seconds": 0.0,
            "intents_handled": intents, "llm_tokens": tokens}


def store(database, tenant_id: uuid.UUID, rows: list[dict]) -> int:
    with database.sessions() as db:
        count = TenantScope(db, tenant_id).insert_rows(UsageRecord, rows, ignore_duplicates=True)
        db.commit()
    return count


def metered(database, tenant_id: uuid.UUID, period: Period) -> tuple[int, ...]:
    with database.sessions() as db:  # a fresh session: a restarted metering process
        u = meter(db, tenant_id, period)
    return (u.events, u.stt_milliseconds, u.tts_characters, u.intents_handled, u.llm_tokens, u.active_devices)


def counted_at(row: dict) -> datetime:
    """The rule the meter must follow, written independently: skewed device clocks count at receipt."""
    skewed = row["ts"] - row["received_at"] > timedelta(hours=24) or row["ts"] < PAIRED
    return row["received_at"] if skewed else row["ts"]


def expected(distinct: list[dict], period: Period) -> tuple[int, ...]:
    rows = [r for r in distinct if period.contains(counted_at(r))]
    return (len(rows), sum(round(r["stt_seconds"] * 1000) for r in rows),
            sum(r["tts_characters"] for r in rows),
            sum(r["intents_handled"] for r in rows), sum(r["llm_tokens"] for r in rows),
            len({r["device_id"] for r in rows}))


# An event: device, when it was received (hours after 1 Feb), how the device clock was off, its values.
clock = st.one_of(
    st.integers(-72 * 60, 23 * 60).map(lambda m: timedelta(minutes=m)),       # late or slightly ahead
    st.integers(25 * 60, 72 * 60).map(lambda m: timedelta(minutes=m)),        # > 24 h in the future
    st.integers(25 * 60, 90 * 24 * 60).map(lambda m: timedelta(minutes=m)),
    st.just(None),                                                             # reset clock: 1970
)
# Received any time from February to mid-April, often within two days of a month's end.
received_hours = st.one_of(st.integers(0, 24 * 70),
                           st.sampled_from([24 * 28, 24 * 59]).flatmap(lambda h: st.integers(h - 48, h + 48)))
event_specs = st.tuples(st.integers(0, 1), received_hours, clock, st.integers(0, 600_000),
                        st.integers(0, 5000), st.integers(0, 3), st.integers(0, 10**9))


@PROPERTY
@given(specs=st.lists(event_specs, min_size=1, max_size=12), data=st.data())
def test_metered_totals_equal_the_distinct_events_whatever_the_delivery(database, specs, data):
    database.wipe()
    with database.sessions() as db:
        tenant_id, devices = make_tenant(db)
    pool = []
    for device, hours, skew, stt_ms, tts, intents, tokens in specs:
        received = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(hours=hours)
        ts = datetime(1970, 1, 1, tzinfo=UTC) if skew is None else received + skew
        pool.append(usage_row(devices[device], ts, received, stt_ms=stt_ms, tts=tts, intents=intents,
                              tokens=tokens))
    # Redelivery (every event at least once, some several times), in any order, in batches.
    deliveries = pool + data.draw(st.lists(st.sampled_from(pool), max_size=10), label="duplicates")
    deliveries = data.draw(st.permutations(deliveries), label="order")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(deliveries)), max_size=4), label="batch cuts"))
    seen: dict[tuple, dict] = {}
    start = 0
    for cut in [*cuts, len(deliveries)]:
        batch = deliveries[start:cut]
        start = cut
        new = {(r["device_id"], r["event_id"]): r for r in batch
               if (r["device_id"], r["event_id"]) not in seen}
        assert store(database, tenant_id, batch) == len(new)
        seen.update(new)
        period = data.draw(st.sampled_from(PERIODS), label="metered after this batch")
        assert metered(database, tenant_id, period) == expected(list(seen.values()), period)
    assert len(seen) == len(pool)
    for period in PERIODS:
        assert metered(database, tenant_id, period) == expected(pool, period)


def test_clock_skew_and_late_events_are_counted_in_a_definite_period(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
    april = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        # late (received in April): March, its device time
        usage_row(device, MARCH.start + timedelta(days=3), april + timedelta(days=9), tts=1),
        # device 11 h ahead (within 24 h): April, its device time
        usage_row(device, april + timedelta(hours=10), MARCH.end - timedelta(hours=1), tts=10),
        # device 23 h ahead: April, its device time; 25 h ahead (beyond 24 h): March, when received
        usage_row(device, MARCH.end + timedelta(hours=21), MARCH.end - timedelta(hours=2), tts=20000),
        usage_row(device, MARCH.end + timedelta(hours=24), MARCH.end - timedelta(hours=1), tts=40000),
        # device 31 days ahead: March, when received
        usage_row(device, MARCH.end + timedelta(days=30), MARCH.end - timedelta(days=1), tts=100),
        # reset clock (1970): March, when received
        usage_row(device, datetime(1970, 1, 1, tzinfo=UTC), MARCH.start + timedelta(hours=5), tts=1000),
        # before the device was paired: April, when received
        usage_row(device, PAIRED - timedelta(days=1), april + timedelta(hours=1), tts=10000),
    ]
    assert store(database, tenant_id, rows) == 7
    with database.sessions() as db:
        assert meter(db, tenant_id, MARCH).tts_characters == 1 + 100 + 1000 + 40000
        assert meter(db, tenant_id, MARCH.next()).tts_characters == 10 + 10000 + 20000


def test_duplicate_events_are_counted_once_and_sessions_and_devices_are_counted(database):
    with database.sessions() as db:
        tenant_id, (one, two) = make_tenant(db)
        scope = TenantScope(db, tenant_id)
        project_id = scope.first(Project).id
        for i, (device, started) in enumerate([(one, MARCH.start), (two, MARCH.start + timedelta(days=2)),
                                               (two, MARCH.end), (two, MARCH.start - timedelta(seconds=1))]):
            scope.add(VoiceSession(device_id=device, project_id=project_id, session_key=f"s{i}",
                                   started_at=started))
        db.commit()
    row = usage_row(one, MARCH.start + timedelta(hours=1), MARCH.start + timedelta(hours=1), stt_ms=1500)
    assert store(database, tenant_id, [row, dict(row)]) == 1
    assert store(database, tenant_id, [row]) == 0
    with database.sessions() as db:
        usage = meter(db, tenant_id, MARCH)
    assert (usage.events, usage.stt_seconds, usage.sessions, usage.active_devices) == (1, 1.5, 2, 2)


def test_thresholds_announce_once_per_meter_and_threshold_and_the_hard_limit_is_reported(database):
    with database.sessions() as db:
        tenant_id, (device, _) = make_tenant(db)
        plan = create_plan(db, {"name": "Small", "code": "small", "currency": "EUR", "monthly_price": 900,
                                "meters": {"tts_characters": {"included": 1000, "overage_price": "0.1",
                                                              "hard_limit": 1500},
                                           "intents_handled": {"included": 100}}})
        subscribe(db, tenant_id, plan.id, at=MARCH.start)
        TenantScope(db, tenant_id).add(Webhook(url="https://example.test/h", events=["usage.threshold"],
                                               secret="s"))
        db.commit()
    at = MARCH.start + timedelta(days=1)

    def alerts() -> list[tuple[str, int]]:
        with database.sessions() as db:
            check_thresholds(db, tenant_id, MARCH)
            db.commit()
            scope = TenantScope(db, tenant_id)
            keys = {d.delivery_key for d in scope.all(WebhookDelivery)}
            found = sorted((a.meter, a.threshold) for a in scope.all(UsageAlert))
            assert keys == {delivery_key(tenant_id, MARCH, m, t) for m, t in found}
            audited = PlatformScope(db).all(AuditEntry, AuditEntry.action == "usage.threshold")
            assert sorted((e.target, e.details["threshold"]) for e in audited) == \
                [(f"meter:{m}", t) for m, t in found]
            return found

    store(database, tenant_id, [usage_row(device, at, at, tts=799)])
    assert alerts() == []
    store(database, tenant_id, [usage_row(device, at, at, tts=1)])
    assert alerts() == [("tts_characters", 80)]
    assert alerts() == [("tts_characters", 80)]          # evaluated again: nothing new
    store(database, tenant_id, [usage_row(device, at, at, tts=700)])
    assert alerts() == [("tts_characters", 80), ("tts_characters", 100)]
    with database.sessions() as db:
        state = limit_state(db, tenant_id, MARCH)
        assert (state.blocked, state.meters["tts_characters"].colour) == (True, "red")
        assert state.blocked_meters == ["tts_characters"]
        assert state.meters["intents_handled"].colour == "green"
        # The hard limit never drops billing data: usage beyond it is still metered.
    store(database, tenant_id, [usage_row(device, at, at, tts=5)])
    with database.sessions() as db:
        assert meter(db, tenant_id, MARCH).tts_characters == 1505
