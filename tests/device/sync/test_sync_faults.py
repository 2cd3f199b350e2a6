"""Faults the sync path must survive, each injected for real: the sync process SIGKILLed in the middle
of a backlog, a disk that fills up, and (tests/device/voice/test_voice_faults.py) the broker stopped during
speech. Each runs against a Mosquitto of its own (tests/owned_broker.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections import Counter
from uuid import uuid4

import pytest

from device.sync.agent import Agent
from device.sync.store import Store
from protocol import messages
from tests.conftest import VOXFLEET
from tests.device.sync.test_agent import exchange
from tests.device.sync.test_sync import paired_device, queue
from tests.owned_broker import OwnedMosquitto, PersistentSubscriber


@pytest.fixture
def broker(tmp_path):
    owned = OwnedMosquitto(tmp_path / "broker").start()
    yield owned
    owned.stop()


def delivered(sub) -> list:
    return [e for p in sub.payloads("/events") for e in messages.decode(p).events]


def test_sync_killed_mid_backlog_loses_nothing_and_redelivers_same_ids(tmp_path, broker):
    device_id = f"kill-{uuid4().hex[:8]}"
    data = paired_device(tmp_path, device_id, broker=broker.url)
    queue(data, 40_000)
    store = Store(data / "store.db")
    queued = {r.event_id for r in store.peek(limit=50_000, max_bytes=2**40)}
    store.close()
    sub = PersistentSubscriber(broker.port, f"voxfleet/v1/devices/{device_id}/events")
    try:
        first = subprocess.Popen([VOXFLEET, "device", "sync", "--data-dir", str(data), "--once"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and len(sub.payloads("/events")) < 4:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        left = Store(data / "store.db")
        assert 0 < left.depth() < 40_000, "the kill must land in the middle of the backlog"
        assert left.integrity_ok()
        left.close()
        second = subprocess.run([VOXFLEET, "device", "sync", "--data-dir", str(data), "--once"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        deadline = time.time() + 30
        while time.time() < deadline and {str(e.event_id) for e in delivered(sub)} != queued:
            time.sleep(0.1)
    finally:
        sub.close()
    events = delivered(sub)
    assert {str(e.event_id) for e in events} == queued  # nothing lost
    copies = Counter(str(e.event_id) for e in events)
    again = [i for i, n in copies.items() if n > 1]
    assert len(again) <= 500  # at most the one batch that was in flight is sent twice...
    by_id = {}
    for e in events:  # ...and a copy is the same event: same id, same seq
        assert by_id.setdefault(str(e.event_id), e.seq) == e.seq


@contextlib.contextmanager
def small_disk(path, size="8m"):
    """A real disk that fills: a small tmpfs (needs root, as CI has). Elsewhere SQLite's own page
    limit raises the same SQLITE_FULL error the store handles."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def session_events(i: int) -> list[dict]:
    ts = "2026-11-26T12:00:00+00:00"
    sid = f"s{i}"
    detail = [{"event_id": str(uuid4()), "type": "utterance", "ts": ts, "session_id": sid,
               "transcript": "what time is it " * 8, "stt_seconds": 1.5} for _ in range(5)]
    return detail + [{"event_id": str(uuid4()), "type": "usage", "ts": ts, "session_id": sid,
                      "wake_words": 1, "stt_seconds": 1.5}]


def test_full_disk_drops_detail_keeps_usage_and_reports_the_drops(tmp_path, broker):
    device_id = f"full-{uuid4().hex[:8]}"
    data = tmp_path / device_id
    with small_disk(data) as real_disk:
        (data / "cloud.json").write_text(json.dumps({"device_id": device_id, "broker_url": broker.url}))
        store = Store(data / "store.db")
        if not real_disk:
            store.db.execute("PRAGMA max_page_count = 1024")  # 4 MiB of 4 KiB pages
        usage_ids = []
        for i in range(2000):  # ~5 MiB of events: more than the disk holds beside the reserve
            events = session_events(i)
            store.append(events)  # never refused: detail makes room for what is billed
            usage_ids.append(events[-1]["event_id"])
        assert store.dropped_total() > 0, "detail events were evicted to make room"
        rows = store.peek(limit=100_000, max_bytes=2**40)
        assert [r.event_id for r in rows if r.type == "usage"] == usage_ids  # every billable unit kept
        assert store.integrity_ok()
        dropped = store.dropped_unreported()
        store.close()

        # The drops are reported with the next batch, and everything left is delivered.
        sub = PersistentSubscriber(broker.port, f"voxfleet/v1/devices/{device_id}/events")
        try:
            out = subprocess.run([VOXFLEET, "device", "sync", "--data-dir", str(data), "--once"],
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
            deadline = time.time() + 20
            while time.time() < deadline and sum(len(messages.decode(p).events)
                                                 for p in sub.payloads("/events")) < len(rows):
                time.sleep(0.1)
        finally:
            sub.close()
        batches = [messages.decode(p) for p in sub.payloads("/events")]
        assert batches[0].dropped == dropped and all(b.dropped == 0 for b in batches[1:])
        sent_usage = [str(e.event_id) for b in batches for e in b.events if e.type == "usage"]
        assert sent_usage == usage_ids


def test_agent_holds_sessions_in_memory_while_the_disk_is_full(tmp_path):
    """Something else (logs, say) fills the disk: the agent evicts what it may, then holds whole
    sessions in memory, says so in its heartbeat, and stores them once there is room again."""
    with small_disk(tmp_path / "disk", size="4m") as real_disk:
        agent = Agent(tmp_path / "disk")
        filler = tmp_path / "disk" / "runaway.log"
        if real_disk:
            with open(filler, "wb") as out, contextlib.suppress(OSError):
                while True:
                    out.write(b"x" * 65536)
                    out.flush()
        else:
            agent.store.db.execute("PRAGMA max_page_count = 40")
        for _ in range(400):
            for raw in exchange():
                agent.on_message(raw)
            if len(agent.pending) >= 3:
                break
        assert agent.pending, "the disk never filled"
        held = len(agent.pending)
        assert agent.heartbeat().outbox_full is True  # what the cloud is told
        stored = agent.store.depth()
        # Room comes back (the runaway log is rotated away): the held sessions go to the outbox.
        if real_disk:
            filler.unlink()
        else:
            agent.store.db.execute("PRAGMA max_page_count = 100000")
        agent.retry_pending()
        assert agent.pending == [] and agent.store.depth() == stored + 7 * held
        assert agent.heartbeat().outbox_full is False
        assert agent.store.integrity_ok()
        agent.store.close()
