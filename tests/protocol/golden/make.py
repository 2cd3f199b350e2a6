"""Freeze one release's wire messages as golden fixtures: every kind, every event type, every command,
exactly as that release encodes them. Run once per release, never again for the same release:

    PYTHONPATH=<that release's checkout> python tests/protocol/golden/make.py tests/protocol/golden/<release>

It only uses what every release has (the message classes and ``encode``) and fills the fields a
release has, so the same script freezes 0.1.0 (from git history) and later releases. The folder must
not exist yet: fixtures of a release are never rewritten (tests/protocol/test_golden.py reads them).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from protocol import messages as m

TS = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
SESSION = "0193f1c2-7a10-7000-8000-000000000001"


def _id(n: int) -> UUID:
    return UUID(f"0193f1c2-7a10-7000-8000-{n:012d}")


def _has(model: type, name: str) -> bool:
    return name in model.model_fields


def events() -> list:
    common = {"session_id": SESSION}
    made = [
        m.SessionStarted(event_id=_id(1), seq=1, ts=TS, **common),
        m.WakeWord(event_id=_id(2), seq=2, ts=TS, wake_word="hey_jarvis", **common),
        m.Utterance(event_id=_id(3), seq=3, ts=TS, transcript="what time is it", stt_seconds=0.31, **common),
        m.IntentMatched(event_id=_id(4), seq=4, ts=TS, skill_id="ovos-skill-date-time.openvoiceos",
                        intent="what.time.is.it.intent", **common, **matched_by()),
        m.AnswerSpoken(event_id=_id(5), seq=5, ts=TS, text="It's ten o'clock.", audio_seconds=1.25, **common),
        m.IntentFailed(event_id=_id(6), seq=6, ts=TS, utterance="sing me a song", **common),
        m.SkillError(event_id=_id(7), seq=7, ts=TS, skill_id="voxfleet-skill-timer.voxfleet",
                     error="ValueError: no duration", **common),
        m.SessionEnded(event_id=_id(8), seq=8, ts=TS, end_state="answered",
                       timings_ms={"wake_detect": 40.0, "end_of_speech_to_first_audio": 612.5,
                                   "intent_to_answer": None}, **common),
        m.Usage(event_id=_id(9), seq=9, ts=TS, wake_words=1, stt_seconds=2.5, tts_characters=17,
                tts_seconds=1.25, intents_handled=1, llm_tokens=0, **common),
    ]
    return made


def matched_by() -> dict:
    if not _has(m.IntentMatched, "stage"):
        return {}
    return {"stage": "semantic", "confidence": 0.87}


def capabilities():
    if not hasattr(m, "Capabilities"):
        return {}
    return {"capabilities": m.Capabilities(
        release="0.2.0", protocol=[1],
        config_fields=["enabled_skills", "lang", "silence_end", "stt_model", "tts_voice", "wake_threshold",
                       "wake_word"],
        commands=["end_session", "reload", "report_now", "speak", "tap_start", "tap_stop"],
        engines={"stt": ["faster-whisper"], "tts": ["piper"], "wake_word": ["openwakeword"]},
        stt_models=["tiny.en", "base"], voices=["en_US-joe-medium"],
        wake_words=["hey_jarvis", "hey_mycroft", "alexa", "hey_rhasspy"],
        skills=[m.SkillInfo(id="ovos-skill-date-time.openvoiceos", version="1.1.5"),
                m.SkillInfo(id="voxfleet-skill-timer.voxfleet", version="0.1.0")],
        features=["bus_tap", "setup_web"])}


def fixtures() -> dict[str, object]:
    heartbeat = {"ts": TS, "uptime_s": 86400.5, "cpu_percent": 12.5, "memory_percent": 41.0,
                 "disk_percent": 63.2, "temperature_c": 48.3, "outbox_depth": 3, "oldest_queued_age_s": 1.5,
                 "outbox_dropped_total": 2, "outbox_full": False,
                 "versions": {"voxfleet": "0.1.0", "ovos-core": "2.1.1"},
                 "services": {"messagebus": "ready", "core": "ready", "audio": "ready",
                              "listener": "starting"}}
    if _has(m.Heartbeat, "unknown_fields_total"):
        heartbeat["unknown_fields_total"] = 4
    ack = {"version": 7, "status": "applied"}
    if _has(m.ConfigAck, "ignored"):
        ack["ignored"] = ["kokoro_voice"]
    found: dict[str, object] = {
        "event_batch": m.EventBatch(events=events(), dropped=2),
        "presence_online": m.Presence(state="online", ts=TS, **capabilities()),
        "presence_offline": m.Presence(state="offline", ts=TS),
        "heartbeat": m.Heartbeat(**heartbeat),
        "desired_config": m.DesiredConfig(version=7, config=m.VoiceConfig(
            wake_word="hey_mycroft", wake_threshold=0.6, stt_model="base", tts_voice="en_US-joe-medium",
            lang="en-US", silence_end=0.5, enabled_skills=["ovos-skill-date-time.openvoiceos"])),
        "config_ack_applied": m.ConfigAck(**ack),
        "config_ack_rejected": m.ConfigAck(version=8, status="rejected",
                                           reason="unknown wake word 'computer'; keeping v7"),
        "command_result": m.CommandResult(command_id=_id(20), status="ok", detail="announcement played"),
        "tap_frame": m.TapFrame(ts=TS, messages=[{"t": 1764151200.0, "type": "speak",
                                                 "data": {"utterance": "It's ten o'clock."}}], suppressed=3),
    }
    args = {"end_session": {}, "speak": {"text": "Breakfast is served.", "lang": "en-US"},
            "tap_start": {"types": ["recognizer_loop:"], "rate": 20, "duration_s": 300}, "tap_stop": {},
            "reload": {}, "report_now": {}}
    for n, (action, arguments) in enumerate(args.items()):
        found[f"command_{action}"] = m.Command(command_id=_id(30 + n), action=action, args=arguments,
                                               issued_at=TS)
    return found


def main(target: str) -> None:
    folder = Path(target)
    if folder.exists():
        sys.exit(f"{folder} exists: a release's golden messages are frozen, never rewritten")
    folder.mkdir(parents=True)
    for name, message in fixtures().items():
        (folder / f"{name}.json").write_bytes(m.encode(message))
    print(f"{len(fixtures())} messages frozen in {folder}")


if __name__ == "__main__":
    main(sys.argv[1])
