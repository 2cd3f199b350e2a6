"""Turn the OVOS messagebus into voice sessions: one per "hey jarvis, ..." exchange.

OVOS tags every message with ``context.session.session_id``, but a local device speaks in a single
long-lived session called ``default``. A *voice session* here is one exchange within it: it opens on
a wake word (or a recording started without one, or a typed utterance) and closes once the request
was handled and everything said in reply has finished playing. Messages are joined on the OVOS
session id, so a remote client's session (a different id) never mixes with the local one.

The builder is fed messages in arrival order and is tolerant of what a real bus does: messages
that never come (no ``audio_output_end`` when playback fails), and a new wake word before the
previous exchange finished (the old one is closed as it stands).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

WATCHED = (
    "recognizer_loop:wakeword",
    "recognizer_loop:record_begin",
    "recognizer_loop:record_end",
    "recognizer_loop:utterance",
    "recognizer_loop:speech.recognition.unknown",
    "complete_intent_failure",
    "speak",
    "recognizer_loop:audio_output_start",
    "recognizer_loop:audio_output_end",
    "ovos.utterance.handled",
    "ovos.utterance.cancelled",
    "mycroft.skill.handler.start",
    "mycroft.skill.handler.complete",
    "mycroft.audio.play_sound",
)

_INTENT_TYPE = re.compile(r"^[\w.\-]+:[\w.\-]+$")
_FALLBACK_TYPE = re.compile(r"^ovos\.skills\.fallback\.(?P<skill>[\w.\-]+)\.request$")
# Matches that ovos-core's own pipelines produce: the stop service, and a skill taking a reply.
_CORE_MATCH_TYPE = re.compile(r"^(stop:(global|skill)|converse:skill|[\w.\-]+\.converse\.get_response)$")
# Sent by the agent when it opens an exchange: {"session_id": ..., "started_at": ...}.
SESSION_ANNOUNCE = "voxfleet.session.started"
# The listener sends record_begin and the wake word from different threads; either may come first.
WAKE_RECORD_SKEW = 2.0
# How long after the last sign of life an exchange is closed regardless (seconds).
IDLE_TIMEOUT = 30.0


def match_stage(data: dict) -> tuple[str | None, float | None]:
    """The pipeline stage and confidence that an intent match message reveals.

    ovos-core's match message (type ``skill:intent``) carries the matcher's ``match_data`` merged
    into its data, and nothing else about the stage. Our pipelines (padacioso's stages, the semantic
    stage) put ``voxfleet_match: {"stage", "confidence"}`` there; an adapt match is recognised by its
    own fields (``intent_type``, ``confidence``, ``__tags__``) but not its level; anything else is
    unknown.
    """
    info = data.get("voxfleet_match")
    if isinstance(info, dict) and info.get("stage"):
        return str(info["stage"])[:64], _unit(info.get("confidence"))
    if "__tags__" in data and "intent_type" in data:
        return "adapt", _unit(data.get("confidence"))
    return None, None


def _unit(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value != value:  # NaN
        return None
    return round(min(1.0, max(0.0, value)), 4)


def ms_between(later: float | None, earlier: float | None) -> float | None:
    """Milliseconds from one moment to another, or None when either is unknown."""
    if later is None or earlier is None:
        return None
    return round((later - earlier) * 1000.0, 1)


@dataclass(frozen=True)
class BusEvent:
    """A bus message as received: ``t`` is the receiver's wall clock (seconds since the epoch)."""

    t: float
    type: str
    data: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)

    @property
    def ovos_session(self) -> str:
        session = self.context.get("session") if isinstance(self.context, dict) else None
        if isinstance(session, dict) and session.get("session_id"):
            return str(session["session_id"])
        return "default"


@dataclass
class VoiceSession:
    session_id: str
    ovos_session_id: str
    started_at: float
    wake_word: str | None = None
    wake_at: float | None = None
    record_begin_at: float | None = None
    record_end_at: float | None = None
    transcript: str | None = None
    utterance_at: float | None = None
    intent: str | None = None
    skill_id: str | None = None
    intent_at: float | None = None
    # Which stage of the intent pipeline matched and how sure it was (0-1), where the match says so.
    match_stage: str | None = None
    match_confidence: float | None = None
    fallback_skill: str | None = None
    failed_at: float | None = None
    answers: list[str] = field(default_factory=list)
    speak_at: float | None = None
    audio_start_at: float | None = None
    audio_end_at: float | None = None
    handled_at: float | None = None
    errors: list[str] = field(default_factory=list)
    no_speech: bool = False
    cancelled: bool = False
    last_seen: float = 0.0
    _pending_speech: int = 0
    closed: bool = False

    @property
    def answer(self) -> str | None:
        return " ".join(self.answers) if self.answers else None

    @property
    def end_state(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.no_speech:
            return "no_speech"
        if self.errors:
            return "error"
        if self.failed_at is not None or (self.intent is None and self.fallback_skill is not None):
            return "not_understood"
        if self.intent is not None:
            return "answered" if self.answers else "handled"
        if self.transcript is None:
            return "no_transcript"
        return "open"

    @property
    def matched_at(self) -> float | None:
        """When the utterance was resolved: an intent matched, a fallback took it, or nothing did."""
        candidates = [t for t in (self.intent_at, self.failed_at) if t is not None]
        return min(candidates) if candidates else None

    def finished(self) -> bool:
        """Handled (or given up on) and nothing still being said."""
        if self.no_speech or self.cancelled:
            return True
        return self.handled_at is not None and self._pending_speech <= 0 and (
            not self.answers or self.audio_end_at is not None
        )


class SessionBuilder:
    """Feed ``BusEvent``s in order; collect finished ``VoiceSession``s from the return values."""

    def __init__(self, new_id=lambda: uuid.uuid4().hex, on_start=None) -> None:
        self._open: dict[str, VoiceSession] = {}
        self._new_id = new_id
        self._on_start = on_start

    def _start(self, event: BusEvent) -> tuple[VoiceSession, list[VoiceSession]]:
        closed = self._close(event.ovos_session)
        session = VoiceSession(self._new_id(), event.ovos_session, started_at=event.t, last_seen=event.t)
        self._open[event.ovos_session] = session
        if self._on_start is not None:
            self._on_start(session)
        return session, closed

    def _close(self, key: str) -> list[VoiceSession]:
        session = self._open.pop(key, None)
        if session is None:
            return []
        session.closed = True
        return [session]

    def feed(self, event: BusEvent) -> list[VoiceSession]:
        """Apply one message; returns the sessions it finished (usually none)."""
        done: list[VoiceSession] = self.expire(event.t)
        key = event.ovos_session
        session = self._open.get(key)
        kind = event.type

        if kind == "recognizer_loop:wakeword":
            if not (session is not None and session.wake_word is None and session.transcript is None
                    and event.t - session.started_at < WAKE_RECORD_SKEW):
                session, closed = self._start(event)
                done += closed
            # else: the listener's record_begin overtook its own wake word message; same exchange
            session.wake_word = event.data.get("key_phrase") or event.data.get("wakeword")
            session.wake_at = event.t
        elif kind == "recognizer_loop:record_begin":
            if session is None or session.record_begin_at is not None:
                session, closed = self._start(event)
                done += closed
            session.record_begin_at = event.t
        elif kind == "recognizer_loop:utterance" and (session is None or session.transcript is not None):
            # Typed input (no wake word, no recording), or a second utterance while the previous
            # exchange waits for an audio_output_end that may never come: a new exchange either way.
            session, closed = self._start(event)
            done += closed
        if session is None:
            return done
        if kind == SESSION_ANNOUNCE:
            # The device's agent names each exchange on the bus, so every listener (the CLI, the
            # setup page) reports the same id the cloud will see.
            announced = event.data.get("session_id")
            if announced:
                session.session_id = str(announced)
            return done

        session.last_seen = event.t
        if kind == "recognizer_loop:record_end":
            session.record_end_at = event.t
        elif kind == "recognizer_loop:utterance":
            utterances = event.data.get("utterances") or []
            if session.transcript is None and utterances:
                session.transcript = str(utterances[0])
                session.utterance_at = event.t
        elif kind == "recognizer_loop:speech.recognition.unknown":
            session.no_speech = True
        elif kind == "complete_intent_failure":
            session.failed_at = session.failed_at or event.t
        elif kind == "ovos.utterance.cancelled":
            session.cancelled = True
        elif kind == "speak":
            text = event.data.get("utterance")
            if text and self._speaks_for(session, event):
                session.answers.append(str(text))
                session.speak_at = session.speak_at or event.t
                session._pending_speech += 1
        elif kind == "recognizer_loop:audio_output_start":
            session.audio_start_at = session.audio_start_at or event.t
        elif kind == "recognizer_loop:audio_output_end":
            session.audio_end_at = event.t
            session._pending_speech = 0  # ovos-audio reports one end for its whole queue
        elif kind == "ovos.utterance.handled" or (
                kind.endswith(".stop.response") and (session.intent or "").startswith("stop:")):
            # A skill asked to stop answers "<skill>.stop.response"; ovos-core sends no "handled" then.
            session.handled_at = event.t
        elif kind == "mycroft.skill.handler.complete" and event.data.get("exception"):
            session.errors.append(str(event.data.get("exception")))
        elif session.utterance_at is not None and session.matched_at is None:
            self._maybe_intent(session, event)

        if session.finished():
            done += self._close(key)
        return done

    @staticmethod
    def _speaks_for(session: VoiceSession, event: BusEvent) -> bool:
        """Whether a ``speak`` answers this exchange, not a timer going off in the middle of it.

        An answer comes after the utterance was resolved, from the skill that took it.
        """
        if session.matched_at is None:
            return False
        speaker = event.context.get("skill_id")
        owner = session.skill_id or session.fallback_skill
        return not speaker or not owner or speaker == owner

    @staticmethod
    def _maybe_intent(session: VoiceSession, event: BusEvent) -> None:
        fallback = _FALLBACK_TYPE.match(event.type)
        if fallback:
            session.fallback_skill = fallback.group("skill")
            session.intent_at = event.t
            return
        if _CORE_MATCH_TYPE.match(event.type):
            session.intent = event.type
            session.skill_id = event.context.get("skill_id")
            session.intent_at = event.t
            session.match_stage = event.type.split(":", 1)[0].split(".")[-1]  # stop, converse, get_response
            return
        if not _INTENT_TYPE.match(event.type):
            return
        if "utterance" not in event.data:
            # A scheduled skill event ("skill:handler", e.g. the hourly chime) looks like an intent
            # but carries no utterance; ovos-core always puts the matched utterance in a match.
            return
        skill_id = event.context.get("skill_id") or event.type.split(":", 1)[0]
        if event.type.split(":", 1)[0] != skill_id:
            return
        session.intent = event.type
        session.skill_id = skill_id
        session.intent_at = event.t
        session.match_stage, session.match_confidence = match_stage(event.data)

    def expire(self, now: float) -> list[VoiceSession]:
        """Close exchanges that have been silent for IDLE_TIMEOUT seconds."""
        stale = [k for k, s in self._open.items() if now - s.last_seen > IDLE_TIMEOUT]
        return [s for k in stale for s in self._close(k)]

    def flush(self) -> list[VoiceSession]:
        """Close everything still open (end of input)."""
        return [s for k in list(self._open) for s in self._close(k)]

    def cancel_all(self) -> list[VoiceSession]:
        """End every open exchange as cancelled (the cloud's end-session command)."""
        for session in self._open.values():
            session.cancelled = True
        return self.flush()

    def open_sessions(self) -> list[VoiceSession]:
        return list(self._open.values())


def build_sessions(events: Iterable[BusEvent]) -> list[VoiceSession]:
    builder = SessionBuilder()
    sessions: list[VoiceSession] = []
    for event in events:
        sessions += builder.feed(event)
    return sessions + builder.flush()
