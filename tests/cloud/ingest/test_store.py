"""Two ingest workers writing the same sessions at once, on PostgreSQL (the database that lets two
transactions write together; SQLite has one writer at a time).

With a shared subscription one device's consecutive batches go to different workers, so a session
cut by a batch boundary is written by two transactions together, and so are the sessions of other
tenants in the same cycles. They must take turns (one waits for the other's commit), never lock in
a circle: PostgreSQL would abort one of them as a deadlock.
"""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import select, text

from cloud.db import Device, SessionEvent, VoiceSession, utcnow
from cloud.ingest import store
from cloud.ingest.validate import Accepted, Inbound, check
from cloud.scoping import PlatformScope
from protocol.topics import Channel, topic
from tests.cloud.fleet import build
from tests.cloud.ingest_rig import WAIT, FleetDevice, batch, session_events, wait_for


def _accepted(device_key: str, events: list[dict]) -> Accepted:
    return check(Inbound(topic(device_key, Channel.EVENTS), batch(events), 1, 1, utcnow()))


def _commit_cycle(pg, items: list[Accepted], errors: list[BaseException]) -> None:
    db = pg.sessions()
    try:
        store.write_cycle(db, items, utcnow())
        db.commit()
    except BaseException as exc:  # reported to the test's thread
        db.rollback()
        errors.append(exc)
    finally:
        db.close()


def test_two_cycles_sharing_sessions_of_two_tenants_take_turns_without_a_deadlock(pg, monkeypatch) -> None:
    with pg.sessions() as db:
        tenants = build(db, [([0], 0), ([0], 0)])
        platform = PlatformScope(db)
        devices = [platform.first(Device, Device.tenant_id == t.tenant_id) for t in tenants]
    sessions = []
    for device in devices:
        fake = FleetDevice(device.device_key, device.id, device.tenant_id, device.project_id or uuid.uuid4(),
                           "u", "p", "mqtt://unused")
        sessions.append(session_events(fake))
    # Each session is cut in two: worker A got the first part of both devices' batches, worker B the
    # rest, and their messages came in opposite orders (A: device 0 first, B: device 1 first).
    first, second = devices[0].device_key, devices[1].device_key
    cycle_a = [_accepted(first, sessions[0][:4]), _accepted(second, sessions[1][:4])]
    cycle_b = [_accepted(second, sessions[1][4:]), _accepted(first, sessions[0][4:])]

    # A stops after writing its first tenant, holding that tenant's session rows, until B is seen
    # waiting for a lock; then A goes on into the other tenant.
    original = store._TenantWriter.write
    a_paused, release = threading.Event(), threading.Event()

    def write(self) -> None:
        original(self)
        if threading.current_thread().name == "cycle-a" and not a_paused.is_set():
            a_paused.set()
            release.wait(WAIT)

    monkeypatch.setattr(store._TenantWriter, "write", write)
    errors: list[BaseException] = []
    a = threading.Thread(target=_commit_cycle, args=(pg, cycle_a, errors), name="cycle-a")
    b = threading.Thread(target=_commit_cycle, args=(pg, cycle_b, errors), name="cycle-b")
    try:
        a.start()
        assert a_paused.wait(WAIT), f"cycle A never finished its first tenant: {errors}"
        b.start()

        def b_waits() -> bool:
            with pg.owner.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar_one())

        wait_for(b_waits, what="cycle B waiting for cycle A's locks")
    finally:
        release.set()
        a.join(WAIT)
        b.join(WAIT)
    assert not a.is_alive() and not b.is_alive()
    assert errors == []

    with pg.sessions() as db:
        platform = PlatformScope(db)
        for device, events in zip(devices, sessions, strict=True):
            stored = platform.scalars(select(SessionEvent.event_id)
                                      .where(SessionEvent.device_id == device.id))
            assert sorted(str(e) for e in stored) == sorted(e["event_id"] for e in events)
            [row] = platform.all(VoiceSession, VoiceSession.device_id == device.id)
            # Whole, whichever transaction committed first: built from both halves.
            assert (row.tenant_id, row.wake_word, row.transcript, row.answer, row.end_state) == (
                device.tenant_id, "hey_jarvis", "what time is it", "It is five past ten.", "answered")
