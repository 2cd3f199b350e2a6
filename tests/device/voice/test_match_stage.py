"""Which pipeline stage matched, and how sure it was: from the match message to the session and its events."""

from __future__ import annotations

import pytest
from ovos_bus_client.message import Message
from ovos_utils.fakebus import FakeBus

from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.stack import config
from device.sync.events import session_events
from device.voice.plugins.intents import InProcessPadaciosoPipeline
from device.voice.sessions import BusEvent, build_sessions, match_stage

SKILL = "ovos-skill-date-time.openvoiceos"
T = 1_795_000_000.0


def ev(t, kind, data=None, **context):
    return BusEvent(T + t, kind, data or {}, {"session": {"session_id": "default"}, **context})


def session_with(match_type, data, skill_id=SKILL):
    (s,) = build_sessions([
        ev(0.0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}),
        ev(0.0, "recognizer_loop:record_begin"),
        ev(1.5, "recognizer_loop:record_end"),
        ev(1.5, "recognizer_loop:utterance", {"utterances": ["could you tell me what time it is"]}),
        ev(1.55, match_type, {"utterance": "could you tell me what time it is", **data}, skill_id=skill_id),
        ev(1.6, "speak", {"utterance": "It's ten past three."}, skill_id=skill_id),
        ev(1.61, "ovos.utterance.handled", skill_id=skill_id),
        ev(1.8, "recognizer_loop:audio_output_start"),
        ev(3.3, "recognizer_loop:audio_output_end"),
    ])
    return s


def matched_event(session):
    return next(e for e in session_events(session) if e["type"] == "intent.matched")


def test_semantic_stage_and_confidence_reach_the_session_and_the_event():
    s = session_with(f"{SKILL}:what.time.is.it.intent",
                     {"voxfleet_match": {"stage": "semantic", "confidence": 0.8123, "score": 0.96}})
    assert (s.match_stage, s.match_confidence) == ("semantic", 0.8123)
    event = matched_event(s)
    assert (event["stage"], event["confidence"]) == ("semantic", 0.8123)


def test_adapt_match_is_recognised_by_its_own_fields():
    data = {"intent_type": "ovos-skill-volume.openvoiceos:less_volume", "confidence": 0.5,
            "target": None, "__tags__": []}
    s = session_with("ovos-skill-volume.openvoiceos:less_volume", data, "ovos-skill-volume.openvoiceos")
    assert (s.match_stage, s.match_confidence) == ("adapt", 0.5)


def test_unknown_stage_sends_no_stage_or_confidence_keys():
    s = session_with(f"{SKILL}:what.time.is.it.intent", {})
    assert (s.match_stage, s.match_confidence) == (None, None)
    event = matched_event(s)
    assert "stage" not in event and "confidence" not in event


def test_core_matches_name_their_stage_without_confidence():
    s = session_with("stop:global", {}, skill_id="stop.openvoiceos")
    assert (s.match_stage, s.match_confidence) == ("stop", None)
    assert "confidence" not in matched_event(s)


@pytest.mark.parametrize(("data", "expected"), [
    ({"voxfleet_match": {"stage": "padacioso_high", "confidence": 1.7}}, ("padacioso_high", 1.0)),
    ({"voxfleet_match": {"stage": "semantic", "confidence": "nan"}}, ("semantic", None)),
    ({"voxfleet_match": {"stage": "x" * 100, "confidence": -3}}, ("x" * 64, 0.0)),
    ({"voxfleet_match": "garbage"}, (None, None)),
])
def test_stage_values_are_kept_within_the_wire_limits(data, expected):
    assert match_stage(data) == expected


def test_padacioso_stages_say_which_pass_matched():
    bus = FakeBus()
    pipe = InProcessPadaciosoPipeline(bus, {"conf_high": 0.95, "conf_med": 0.8, "conf_low": 0.5})
    timer = {"name": "t.test:timer.set.intent", "samples": ["set a timer for {duration}"], "lang": "en-US"}
    bus.emit(Message("padatious:register_intent", timer))
    bus.emit(Message("padatious:register_intent",
                     {"name": "t.test:time.intent", "samples": ["what time is it"], "lang": "en-US"}))
    message = Message("recognizer_loop:utterance")
    high = pipe.match_high(["what time is it"], "en-US", message)
    assert high.match_data["voxfleet_match"] == {"stage": "padacioso_high", "confidence": 1.0}
    timer = pipe.match_high(["set a timer for five minutes"], "en-US", message) or pipe.match_medium(
        ["set a timer for five minutes"], "en-US", message)
    assert timer.match_data["duration"] == "five minutes"
    assert timer.match_data["voxfleet_match"]["stage"] in ("padacioso_high", "padacioso_medium")
    pipe.shutdown()


def render(tmp_path, **fields):
    return config.render(DeviceSettings(timezone="UTC", **fields), DevicePaths.at(tmp_path / "device"))


def test_semantic_stage_sits_after_the_exact_stages_and_before_the_fallbacks(tmp_path):
    intents = render(tmp_path)["intents"]
    pipeline = intents["pipeline"]
    at = pipeline.index("voxfleet-semantic-pipeline")
    assert pipeline.index("voxfleet-intent-pipeline-medium") < at and pipeline.index("adapt_medium") < at
    assert at < pipeline.index("fallback_medium") < pipeline.index("fallback_low")
    assert intents["voxfleet-semantic-pipeline"] == {"enabled": True, "min_score": 0.9, "min_margin": 0.005}


def test_semantic_stage_can_be_turned_off_and_is_absent_from_stock(tmp_path):
    assert "voxfleet-semantic-pipeline" not in render(tmp_path, semantic_intents=False)["intents"]["pipeline"]
    assert "voxfleet-semantic-pipeline" not in render(tmp_path, tuning="stock")["intents"]["pipeline"]


def test_settings_defaults_match_the_plugin_defaults():
    from device.voice.plugins import semantic

    settings = DeviceSettings(timezone="UTC")
    assert settings.semantic_intents is True
    assert (settings.semantic_min_score, settings.semantic_min_margin) == (
        semantic.DEFAULT_MIN_SCORE, semantic.DEFAULT_MIN_MARGIN)
