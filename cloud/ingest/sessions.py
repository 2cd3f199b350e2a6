"""A voice session's summary row, computed from the set of its stored events.

The summary is a pure function of the events (ordered by their per-device ``seq``), never of the
order they arrived in: with several workers on a shared subscription a device's batches may be
committed out of order, and a redelivered batch must change nothing. Recomputing from the stored
set gives both for free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    type: str
    ts: datetime
    payload: dict[str, Any]


def clean_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; keep the rest of what the device sent."""
    return value.replace("\x00", "\ufffd") if value is not None else None


def _cut(value: str | None, length: int) -> str | None:
    return clean_text(value[:length]) if value is not None else None


def summarize(events: Iterable[StoredEvent]) -> dict[str, Any]:
    """The VoiceSession columns these events determine; what they say nothing about is None.

    Text is cut to the columns' lengths (the wire allows 200-character names, a wake word column
    holds 64): a long name is stored shortened rather than the whole batch refused.
    """
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        raise ValueError("a session summary needs at least one event")
    fields: dict[str, Any] = {
        "started_at": min(e.ts for e in ordered),
        "wake_word": None, "transcript": None, "intent_skill": None, "intent_name": None,
        "intent_stage": None, "intent_confidence": None,
        "answer": None, "ended_at": None, "end_state": None, "timings": None,
    }
    answers: list[str] = []
    failed_utterance: str | None = None
    for event in ordered:
        data = event.payload
        if event.type == "session.started":
            fields["started_at"] = event.ts
        elif event.type == "wake_word":
            fields["wake_word"] = _cut(data.get("wake_word"), 64)
        elif event.type == "utterance":
            fields["transcript"] = clean_text(data.get("transcript"))
        elif event.type == "intent.failed":
            failed_utterance = clean_text(data.get("utterance"))
        elif event.type == "intent.matched":
            fields["intent_skill"] = _cut(data.get("skill_id"), 200)
            fields["intent_name"] = _cut(data.get("intent"), 200)
            fields["intent_stage"] = _cut(data.get("stage"), 64)
            fields["intent_confidence"] = data.get("confidence")
        elif event.type == "answer.spoken":
            answers.append(clean_text(data.get("text")) or "")
        elif event.type == "session.ended":
            fields["ended_at"] = event.ts
            fields["end_state"] = data.get("end_state")
            fields["timings"] = data.get("timings_ms") or {}
    if fields["transcript"] is None:
        fields["transcript"] = failed_utterance
    if answers:
        fields["answer"] = " ".join(a for a in answers if a)
    return fields
