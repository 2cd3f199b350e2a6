"""Turn a finished voice session into the protocol's events, ready for the outbox.

One session becomes: session.started, wake_word (if any), utterance (if heard), intent.matched or
intent.failed, answer.spoken (if anything was said), skill.error (per handler error),
session.ended (with end state and stage timings), and one usage event with the session's billable
units. Every event gets its own UUIDv7 now, so a redelivery after a crash carries the same id
(the outbox stores the event, id included, before anything is sent). ``seq`` is assigned by the
outbox. Each event is validated against ``protocol.messages`` here, so a bad one fails on the
device, loudly, instead of being rejected by the cloud later.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import TypeAdapter

from device.voice.sessions import VoiceSession
from protocol import messages
from protocol.ids import new_event_id

_EVENT = TypeAdapter(messages.Event)


def _ts(t: float | None, fallback: float) -> str:
    return datetime.fromtimestamp(t if t is not None else fallback, UTC).isoformat()


def usage_units(session: VoiceSession) -> dict:
    """What this exchange used: the meters billing counts (docs/billing.md)."""
    stt = 0.0
    if session.record_begin_at is not None and session.record_end_at is not None:
        stt = max(0.0, session.record_end_at - session.record_begin_at)
    tts = 0.0
    if session.audio_start_at is not None and session.audio_end_at is not None:
        tts = max(0.0, session.audio_end_at - session.audio_start_at)
    return {
        "wake_words": int(session.wake_word is not None),
        "stt_seconds": round(stt, 3),
        "tts_characters": sum(len(a) for a in session.answers),
        "tts_seconds": round(tts, 3),
        "intents_handled": int(session.intent is not None and session.handled_at is not None),
    }


def session_events(session: VoiceSession, timings_ms: dict | None = None) -> list[dict]:
    """The events of one finished session, as JSON-ready dicts without ``seq``."""
    start = session.started_at
    sid = session.session_id
    out: list[dict] = []

    def add(kind: str, t: float | None, **fields) -> None:
        event = {"event_id": str(new_event_id()), "type": kind, "ts": _ts(t, start), "session_id": sid,
                 **{k: v for k, v in fields.items() if v is not None}}
        _EVENT.validate_python({**event, "seq": 0})  # fail here, not in the cloud
        out.append(event)

    add("session.started", start)
    if session.wake_word:
        add("wake_word", session.wake_at, wake_word=session.wake_word)
    if session.transcript is not None:
        add("utterance", session.utterance_at, transcript=session.transcript[:messages.MAX_TEXT],
            stt_seconds=usage_units(session)["stt_seconds"])
    if session.intent:
        skill, _, intent = session.intent.partition(":")
        # stage and confidence only where known: add() leaves out None fields.
        add("intent.matched", session.intent_at, skill_id=session.skill_id or skill, intent=intent or skill,
            stage=session.match_stage, confidence=session.match_confidence)
    elif session.transcript is not None and session.matched_at is not None:
        add("intent.failed", session.matched_at, utterance=session.transcript[:messages.MAX_TEXT])
    if session.answers:
        tts = usage_units(session)["tts_seconds"]
        add("answer.spoken", session.speak_at, text=session.answer[:messages.MAX_TEXT],
            audio_seconds=tts or None)
    for error in session.errors:
        add("skill.error", session.last_seen, skill_id=session.skill_id, error=error[:messages.MAX_TEXT])
    end = max(t for t in (session.last_seen, session.audio_end_at, session.handled_at, start) if t)
    add("session.ended", end, end_state=session.end_state,
        timings_ms={k: v for k, v in (timings_ms or {}).items() if v is None or isinstance(v, (int, float))})
    add("usage", end, **usage_units(session))
    return out
