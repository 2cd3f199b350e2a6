"""The device store: the outbox keeps every event until the broker has it, honours its cap without
ever dropping usage, and survives a writer killed mid-transaction."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.sync.store import Store


def event(kind="wake_word", pad=0):
    return {"event_id": str(uuid4()), "type": kind, "ts": "2026-11-26T12:00:00Z", "pad": "x" * pad}


def test_append_peek_ack_in_order(tmp_path):
    store = Store(tmp_path / "s.db")
    seqs = store.append([event() for _ in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    rows = store.peek(limit=3)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert json.loads(rows[0].payload)["seq"] == 1
    store.ack([1, 2])
    assert [r.seq for r in store.peek()] == [3, 4, 5]
    assert store.depth() == 3


def test_seq_survives_restart_and_is_never_reused(tmp_path):
    store = Store(tmp_path / "s.db")
    store.append([event(), event()])
    store.ack([1, 2])
    store.close()
    store = Store(tmp_path / "s.db")
    assert store.append([event()]) == [3]


def test_duplicate_event_id_is_refused_whole(tmp_path):
    store = Store(tmp_path / "s.db")
    same = event()
    store.append([same])
    with pytest.raises(sqlite3.IntegrityError):
        store.append([event(), same])
    assert store.depth() == 1  # the batch with the duplicate left nothing behind


def test_cap_drops_oldest_detail_never_usage(tmp_path):
    store = Store(tmp_path / "s.db", cap_bytes=3000)
    store.append([event("usage", 200)])
    store.append([event("wake_word", 200) for _ in range(5)])
    store.append([event("usage", 200) for _ in range(20)])  # alone these exceed the cap
    kinds = [json.loads(r.payload)["type"] for r in store.peek(limit=1000, max_bytes=10**9)]
    assert kinds.count("usage") == 21  # every usage event kept, even over the cap
    assert kinds.count("wake_word") == 0
    assert store.dropped_unreported() == 5 and store.dropped_total() == 5
    store.ack([], dropped_reported=5)
    assert store.dropped_unreported() == 0 and store.dropped_total() == 5


def test_peek_respects_payload_size(tmp_path):
    store = Store(tmp_path / "s.db")
    store.append([event(pad=1000) for _ in range(10)])
    assert 1 <= len(store.peek(max_bytes=3500)) <= 3


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["usage", "wake_word", "utterance"]), min_size=1, max_size=60),
       st.integers(500, 5000))
def test_cap_policy_property(tmp_path_factory, kinds, cap):
    store = Store(tmp_path_factory.mktemp("p") / "s.db", cap_bytes=cap)
    for kind in kinds:
        store.append([event(kind, 50)])
    left = [json.loads(r.payload) for r in store.peek(limit=10**6, max_bytes=10**9)]
    assert sum(e["type"] == "usage" for e in left) == kinds.count("usage")
    assert [e["seq"] for e in left] == sorted(e["seq"] for e in left)
    assert store.dropped_total() == len(kinds) - len(left)
    if store.dropped_total():
        detail_left = [e for e in left if e["type"] != "usage"]
        assert store.outbox_bytes() <= cap or not detail_left


def test_local_history(tmp_path):
    store = Store(tmp_path / "s.db")
    now = time.time()
    store.record_session({"session_id": "a", "started_at": now - 10 * 86400, "transcript": "old"})
    store.record_session({"session_id": "b", "started_at": now, "transcript": "what time is it",
                          "intent": "x:y", "timings_ms": {"wake_detect": 50.0}})
    assert [s["session_id"] for s in store.recent_sessions()] == ["b", "a"]
    assert store.recent_sessions()[0]["timings_ms"] == {"wake_detect": 50.0}
    assert store.prune_sessions(older_than_days=7) == 1
    assert [s["session_id"] for s in store.recent_sessions()] == ["b"]


WRITER = """
import sys, uuid
from device.sync.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
while True:
    store.append([{"event_id": str(uuid.uuid4()), "type": "utterance", "pad": "x" * 2000}
                  for _ in range(50)])
"""


def test_power_cut_during_writes_leaves_a_clean_store(tmp_path):
    path = tmp_path / "s.db"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = Store(path)
        assert store.integrity_ok()
        seqs = [r.seq for r in store.peek(limit=10**6, max_bytes=10**9)]
        assert len(seqs) % 50 == 0  # whole batches only: a killed transaction left nothing behind
        assert seqs == list(range(1, len(seqs) + 1))
        store.close()


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.one_of(st.tuples(st.just("append"), st.integers(1, 20), st.integers(0, 400)),
                                st.tuples(st.just("ack"), st.integers(1, 30), st.just(0))), max_size=25),
       cap=st.integers(2_000, 20_000))
def test_running_byte_count_matches_the_rows(tmp_path_factory, steps, cap):
    """The outbox's size is kept as a running count (no O(n) SUM per append); it must never drift,
    whatever mix of appends, cap drops and acks happened, nor across a reopen."""
    path = tmp_path_factory.mktemp("bytes") / "store.db"
    store = Store(path, cap_bytes=cap)
    for op, n, pad in steps:
        if op == "append":
            store.append([event("usage" if i % 3 == 0 else "wake_word", pad) for i in range(n)])
        else:
            store.ack([r.seq for r in store.peek(limit=n)])
        actual = store.db.execute("SELECT coalesce(sum(bytes), 0) FROM outbox").fetchone()[0]
        assert store.outbox_bytes() == actual
    kept = store.outbox_bytes()
    store.close()
    reopened = Store(path, cap_bytes=cap)  # recounts from the rows
    assert reopened.outbox_bytes() == kept
    reopened.close()
