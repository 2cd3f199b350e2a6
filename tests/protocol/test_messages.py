"""Message schemas: every valid message survives encode/decode unchanged; a mutated, oversized or
wrong-version one is refused whole, with a reason. (Fields a reader does not know are not a mutation:
they are ignored and reported, tests/protocol/test_evolution.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.ids import new_event_id

utc_times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1),
                         timezones=st.just(UTC))
texts = st.text(max_size=200)
names = st.text(min_size=1, max_size=40)


@st.composite
def events(draw, seq):
    common = {"event_id": new_event_id(), "seq": seq, "ts": draw(utc_times),
              "session_id": draw(st.none() | st.text(max_size=32))}
    kind = draw(st.sampled_from(["wake", "utt", "intent", "fail", "answer", "error", "usage", "start",
                                 "end"]))
    if kind == "wake":
        return m.WakeWord(wake_word=draw(names), **common)
    if kind == "utt":
        return m.Utterance(transcript=draw(texts), stt_seconds=draw(st.floats(0, 600)), **common)
    if kind == "intent":
        return m.IntentMatched(skill_id=draw(names), intent=draw(names), **common)
    if kind == "fail":
        return m.IntentFailed(utterance=draw(texts), **common)
    if kind == "answer":
        return m.AnswerSpoken(text=draw(texts), audio_seconds=draw(st.none() | st.floats(0, 3600)), **common)
    if kind == "error":
        return m.SkillError(skill_id=draw(st.none() | names), error=draw(texts), **common)
    if kind == "start":
        return m.SessionStarted(**common)
    if kind == "end":
        return m.SessionEnded(end_state=draw(st.sampled_from(["answered", "no_speech", "error"])),
                              timings_ms={"wake_detect": draw(st.none() | st.floats(0, 1e5))}, **common)
    return m.Usage(wake_words=draw(st.integers(0, 10)), stt_seconds=draw(st.floats(0, 100)),
                   tts_characters=draw(st.integers(0, 10_000)), intents_handled=draw(st.integers(0, 5)),
                   **common)


@st.composite
def batches(draw):
    count = draw(st.integers(1, 20))
    start = draw(st.integers(0, 10**9))
    return m.EventBatch(events=[draw(events(start + i)) for i in range(count)],
                        dropped=draw(st.integers(0, 1000)))


@st.composite
def other_messages(draw):
    return draw(st.sampled_from([
        m.Presence(state=draw(st.sampled_from(["online", "offline"])), ts=draw(utc_times)),
        m.Heartbeat(ts=draw(utc_times), uptime_s=draw(st.floats(0, 1e7)), cpu_percent=draw(st.floats(0, 100)),
                    memory_percent=draw(st.floats(0, 100)), disk_percent=draw(st.floats(0, 100)),
                    outbox_depth=draw(st.integers(0, 10**6)), services={"listener": "ready"},
                    versions={"voxfleet": "0.1.0"}),
        m.DesiredConfig(version=draw(st.integers(1, 10**6)),
                        config=m.VoiceConfig(wake_word=draw(st.none() | names))),
        m.ConfigAck(version=draw(st.integers(1, 100)), status="rejected", reason=draw(texts)),
        m.Command(command_id=new_event_id(), action="speak", args={"text": draw(texts)},
                  issued_at=draw(utc_times)),
        m.CommandResult(command_id=new_event_id(), status="ok"),
        m.TapFrame(ts=draw(utc_times), messages=[{"type": "speak"}], suppressed=draw(st.integers(0, 50))),
    ]))


@settings(max_examples=60, deadline=None)
@given(batches() | other_messages())
def test_round_trip(message):
    assert m.decode(m.encode(message)) == message


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(["v", "event_id", "seq", "ts", "type"]), st.data())
def test_mutated_batches_are_refused(batch, field, data):
    raw = json.loads(m.encode(batch))
    target = raw["events"][data.draw(st.integers(0, len(raw["events"]) - 1))]
    if field == "v":
        raw["v"] = data.draw(st.sampled_from([0, 2, "1", None]))
    elif field == "event_id":
        target["event_id"] = data.draw(st.sampled_from(["", "not-a-uuid", 42]))
    elif field == "seq":
        target["seq"] = data.draw(st.sampled_from([-1, "x", None]))
    elif field == "ts":
        target["ts"] = data.draw(st.sampled_from(["yesterday", "2026-11-26T10:00:00", None]))
    else:
        target["type"] = "made.up"
    with pytest.raises(m.MessageError):
        m.decode(json.dumps(raw).encode())


def test_events_must_be_in_seq_order():
    now = datetime.now(UTC)
    first, second = (m.SessionStarted(event_id=new_event_id(), seq=s, ts=now) for s in (5, 4))
    with pytest.raises(ValueError, match="increasing seq"):
        m.EventBatch(events=[first, second])


@pytest.mark.parametrize("payload,reason", [
    (b"{not json", "not JSON"), (b"[1, 2]", "not a JSON object"),
    (b'{"v": 2, "kind": "presence"}', "version"),
    (b'{"v": 1, "kind": "presence", "state": "online"}', "invalid presence: ts"),
    (b"\xff\xfe", "not JSON"),
])
def test_bad_payloads_say_why(payload, reason):
    with pytest.raises(m.MessageError, match=reason):
        m.decode(payload)


def test_size_limits():
    huge = b'{"v": 1, "kind": "presence", "pad": "' + b"x" * m.MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(m.MessageError, match="exceeds"):
        m.decode(huge)
    now = datetime.now(UTC)
    with pytest.raises(ValueError):
        m.EventBatch(events=[m.SessionStarted(event_id=new_event_id(), seq=i, ts=now)
                             for i in range(m.MAX_EVENTS_PER_BATCH + 1)])
    with pytest.raises(ValueError):
        m.Utterance(event_id=new_event_id(), seq=0, ts=now, transcript="x" * (m.MAX_TEXT + 1), stt_seconds=1)


def test_timestamps_are_utc_and_ids_time_ordered():
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    event = m.WakeWord(event_id=new_event_id(), seq=1, ts=local, wake_word="hey_jarvis")
    assert event.ts.utcoffset() == timedelta(0) and event.ts.hour == 12
    ids = [new_event_id() for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50 and all(i.version == 7 for i in ids)
