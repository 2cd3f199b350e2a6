"""The agent without the voice stack: a finished exchange goes to the store and, once paired, to
the real broker, with a heartbeat beside it; `run/sync.json` says how far behind it is."""

from __future__ import annotations

import json
import threading
import time
from uuid import uuid4

from device.sync.agent import Agent
from protocol import messages
from protocol.topics import Channel, topic
from tests.device.sync.test_sync import Subscriber


def bus(_t, kind, data=None, **context):
    return json.dumps({"type": kind, "data": data or {},
                       "context": {"session": {"session_id": "default"}, **context}})


def exchange():
    skill = "voxfleet-skill-timer.voxfleet"
    return [
        bus(0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}),
        bus(0, "recognizer_loop:record_begin"),
        bus(1, "recognizer_loop:record_end"),
        bus(1, "recognizer_loop:utterance", {"utterances": ["set a timer for five minutes"]}),
        bus(1, f"{skill}:timer.set.intent", {"utterance": "set a timer for five minutes"}, skill_id=skill),
        bus(1, "speak", {"utterance": "Timer set for five minutes."}, skill_id=skill),
        bus(1, "ovos.utterance.handled", skill_id=skill),
        bus(1, "recognizer_loop:audio_output_start"),
        bus(2, "recognizer_loop:audio_output_end"),
    ]


def test_unpaired_agent_records_locally(tmp_path):
    agent = Agent(tmp_path)
    for raw in exchange():
        agent.on_message(raw)
    assert agent.recorded == 1
    (session,) = agent.store.recent_sessions()
    assert session["transcript"] == "set a timer for five minutes" and session["end_state"] == "answered"
    assert agent.store.depth() == 7  # started, wake word, utterance, intent, answer, ended, usage
    agent.write_sync_state(None)
    state = json.loads((tmp_path / "run" / "sync.json").read_text())
    assert state["outbox_depth"] == 7 and state["last_sync"] is None


def test_paired_agent_delivers_events_and_heartbeat(tmp_path):
    device_id = f"agent-{uuid4().hex[:8]}"
    (tmp_path / "cloud.json").write_text(json.dumps({"device_id": device_id,
                                                     "broker_url": "mqtt://127.0.0.1:1883"}))
    sub = Subscriber(f"voxfleet/v1/devices/{device_id}/#")
    agent = Agent(tmp_path)
    thread = threading.Thread(target=agent.sync_loop, daemon=True)
    thread.start()
    try:
        for raw in exchange():
            agent.on_message(raw)
        deadline = time.time() + 20
        while time.time() < deadline:
            kinds = {t for t, *_ in sub.messages}
            wanted = {topic(device_id, Channel.EVENTS), topic(device_id, Channel.HEARTBEAT)}
            if wanted <= kinds and agent.store.depth() == 0:
                break
            time.sleep(0.1)
    finally:
        agent.stop.set()
        thread.join(10)
        sub.close()
    events = [e for t, p, _ in sub.messages if t == topic(device_id, Channel.EVENTS)
              for e in messages.decode(p).events]
    assert [e.type for e in events] == ["session.started", "wake_word", "utterance", "intent.matched",
                                        "answer.spoken", "session.ended", "usage"]
    beats = [messages.decode(p) for t, p, _ in sub.messages if t == topic(device_id, Channel.HEARTBEAT)]
    assert beats and beats[0].outbox_depth >= 0
    state = json.loads((tmp_path / "run" / "sync.json").read_text())
    assert state["outbox_depth"] == 0 and state["last_sync"]

