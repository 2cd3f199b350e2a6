"""A finished voice session becomes valid protocol events with exact usage units."""

from __future__ import annotations

import json

from device.sync.events import session_events, usage_units
from device.voice.sessions import BusEvent, build_sessions
from protocol import messages
from protocol.ids import new_event_id

T = 1_795_000_000.0


def ev(t, kind, data=None, **context):
    return BusEvent(T + t, kind, data or {}, {"session": {"session_id": "default"}, **context})


def answered_session():
    skill = "ovos-skill-date-time.openvoiceos"
    (s,) = build_sessions([
        ev(0.0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}),
        ev(0.0, "recognizer_loop:record_begin"),
        ev(1.5, "recognizer_loop:record_end"),
        ev(1.5, "recognizer_loop:utterance", {"utterances": ["what time is it"]}),
        ev(1.55, f"{skill}:what.time.is.it.intent", {"utterance": "what time is it"}, skill_id=skill),
        ev(1.6, "speak", {"utterance": "It's ten past three."}, skill_id=skill),
        ev(1.61, "ovos.utterance.handled", skill_id=skill),
        ev(1.8, "recognizer_loop:audio_output_start"),
        ev(3.3, "recognizer_loop:audio_output_end"),
    ])
    return s


def test_events_of_an_answered_session_validate_as_a_batch():
    session = answered_session()
    events = session_events(session, {"wake_detect": 50.0, "end_of_speech_to_first_audio": None})
    kinds = [e["type"] for e in events]
    assert kinds == ["session.started", "wake_word", "utterance", "intent.matched", "answer.spoken",
                     "session.ended", "usage"]
    batch = messages.EventBatch.model_validate({"events": [{**e, "seq": i} for i, e in enumerate(events)]})
    assert messages.decode(messages.encode(batch)) == batch
    assert len({e["event_id"] for e in events}) == len(events)
    matched = events[3]
    assert (matched["skill_id"], matched["intent"]) == ("ovos-skill-date-time.openvoiceos",
                                                        "what.time.is.it.intent")
    assert json.loads(json.dumps(events)) == events  # JSON-ready as they are


def test_usage_units_are_exact():
    units = usage_units(answered_session())
    assert units == {"wake_words": 1, "stt_seconds": 1.5, "tts_characters": len("It's ten past three."),
                     "tts_seconds": 1.5, "intents_handled": 1}


def test_failed_and_silent_sessions():
    (failed,) = build_sessions([
        ev(0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}),
        ev(1, "recognizer_loop:utterance", {"utterances": ["blargh"]}),
        ev(1.1, "complete_intent_failure"),
        ev(1.2, "ovos.utterance.handled"),
    ])
    kinds = [e["type"] for e in session_events(failed)]
    assert "intent.failed" in kinds and "intent.matched" not in kinds
    usage = session_events(failed)[-1]
    assert usage["type"] == "usage" and usage["intents_handled"] == 0
    (silent,) = build_sessions([
        ev(0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}),
        ev(2, "recognizer_loop:speech.recognition.unknown"),
    ])
    events = session_events(silent)
    assert [e["type"] for e in events] == ["session.started", "wake_word", "session.ended", "usage"]
    assert events[2]["end_state"] == "no_speech"


def test_event_ids_are_uuid7():
    assert new_event_id().version == 7
