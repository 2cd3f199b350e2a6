"""The broker goes away while people talk to the device, and comes back: every session spoken in the
meantime reaches the cloud, each event once, in order. The real voice stack, re-paired for this test
to a Mosquitto of the test's own that it stops and starts."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from device.voice import samples
from protocol import messages
from tests.owned_broker import OwnedMosquitto, PersistentSubscriber

pytestmark = pytest.mark.voice

# Questions that leave no state behind: the voice stack is shared with tests that count timers.
COMMANDS = ["What time is it?", "What day is it today?", "What year is it?"]


def sync_state(stack) -> dict:
    try:
        return json.loads((stack.paths.run / "sync.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def repair(stack, broker_url: str) -> None:
    """Point the device at another broker, as pairing does; the agent follows the pairing record."""
    record = json.loads((stack.paths.root / "cloud.json").read_text())
    record["broker_url"] = broker_url
    (stack.paths.root / "cloud.json").write_text(json.dumps(record))
    wait_until(lambda: sync_state(stack).get("broker_url") == broker_url
               and sync_state(stack).get("connected"), 60, f"the agent to connect to {broker_url}")


def test_broker_stopped_during_speech_then_back_delivers_everything(voice_stack, piper_voice, tmp_path):
    stack = voice_stack
    original = json.loads((stack.paths.root / "cloud.json").read_text())["broker_url"]
    broker = OwnedMosquitto(tmp_path / "broker").start()
    sub = PersistentSubscriber(broker.port, f"voxfleet/v1/devices/{stack.device_id}/events")
    wavs = [samples.synthesize(piper_voice, text, tmp_path / "wav").path for text in COMMANDS]
    try:
        repair(stack, broker.url)
        # The broker stops a second into the first command and stays down for all three.
        stopper = threading.Timer(1.0, broker.stop)
        stopper.start()
        spoken = stack.listen(wavs)
        stopper.join()
        assert len(spoken) == 3
        wait_until(lambda: not sync_state(stack).get("connected"), 30, "the agent to notice")
        wait_until(lambda: sync_state(stack).get("outbox_depth", 0) > 0, 30, "events to queue")
        queued = sync_state(stack)["outbox_depth"]
        broker.start()
        wait_until(lambda: sync_state(stack).get("outbox_depth") == 0 and sync_state(stack).get("connected"),
                   120, "the outbox to drain after the broker came back")
        wanted = {s["session_id"] for s in spoken}
        wait_until(lambda: wanted <= {e.session_id for p in sub.payloads("/events")
                                      for e in messages.decode(p).events}, 30, "every session to arrive")
    finally:
        sub.close()
        broker.stop()
        repair(stack, original)
    events = [e for p in sub.payloads("/events") for e in messages.decode(p).events]
    mine = [e for e in events if e.session_id in wanted]
    assert queued >= 7  # at least one whole session waited in the outbox
    assert max(Counter(str(e.event_id) for e in mine).values()) == 1  # each event once
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)  # in order
    for session_id in wanted:
        kinds = [e.type for e in mine if e.session_id == session_id]
        assert kinds[0] == "session.started" and {"session.ended", "usage"} <= set(kinds)
