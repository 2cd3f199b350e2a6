"""Message schemas of the wire contract (pydantic v2), shared by device and cloud.

Every message carries ``v`` (the schema version) and is rejected whole when it does not validate:
nothing is half-stored. Every event has an ``event_id`` unique worldwide (UUIDv7: time-ordered, so
stores index it well), a per-device monotonic ``seq`` and a UTC timestamp. Sizes are bounded so a
single message can never exhaust a broker, a worker or a database row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
MAX_EVENTS_PER_BATCH = 500
MAX_TEXT = 2000  # characters of a transcript or an answer

Text = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class MessageError(ValueError):
    """A message that breaks the contract; the text says why (logged and counted, never stored)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = VERSION


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    return value.astimezone(UTC)


# --- events ------------------------------------------------------------------------------------------


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    event_id: UUID
    seq: int = Field(ge=0)
    ts: datetime
    session_id: Annotated[str, Field(max_length=64)] | None = None

    _check_ts = field_validator("ts")(_utc)


class SessionStarted(_Event):
    type: Literal["session.started"] = "session.started"


EndState = Literal["answered", "handled", "not_understood", "no_speech", "no_transcript", "error",
                   "cancelled", "open"]
END_STATES: tuple[str, ...] = get_args(EndState)


class SessionEnded(_Event):
    type: Literal["session.ended"] = "session.ended"
    end_state: EndState
    timings_ms: dict[Annotated[str, Field(max_length=64)], float | None] = Field(default_factory=dict,
                                                                                max_length=32)


class WakeWord(_Event):
    type: Literal["wake_word"] = "wake_word"
    wake_word: Name


class Utterance(_Event):
    type: Literal["utterance"] = "utterance"
    transcript: Text
    stt_seconds: float = Field(ge=0, le=600)


class IntentMatched(_Event):
    type: Literal["intent.matched"] = "intent.matched"
    skill_id: Name
    intent: Name


class IntentFailed(_Event):
    type: Literal["intent.failed"] = "intent.failed"
    utterance: Text


class AnswerSpoken(_Event):
    type: Literal["answer.spoken"] = "answer.spoken"
    text: Text
    audio_seconds: float | None = Field(default=None, ge=0, le=3600)


class SkillError(_Event):
    type: Literal["skill.error"] = "skill.error"
    skill_id: Name | None = None
    error: Text


class Usage(_Event):
    """Billable units of one session. Never dropped from a device's outbox."""

    type: Literal["usage"] = "usage"
    wake_words: int = Field(default=0, ge=0, le=1000)
    stt_seconds: float = Field(default=0.0, ge=0, le=86400)
    tts_characters: int = Field(default=0, ge=0, le=10_000_000)
    tts_seconds: float = Field(default=0.0, ge=0, le=86400)
    intents_handled: int = Field(default=0, ge=0, le=1000)
    llm_tokens: int = Field(default=0, ge=0, le=10_000_000)


Event = Annotated[
    SessionStarted | SessionEnded | WakeWord | Utterance | IntentMatched | IntentFailed
    | AnswerSpoken | SkillError | Usage,
    Field(discriminator="type"),
]


class EventBatch(_Message):
    kind: Literal["event_batch"] = "event_batch"
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)
    dropped: int = Field(default=0, ge=0)  # detail events the outbox had to drop since the last batch

    @field_validator("events")
    @classmethod
    def _in_order(cls, events: list) -> list:
        seqs = [e.seq for e in events]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            raise ValueError("events must be in strictly increasing seq order")
        return events


# --- presence, heartbeat ----------------------------------------------------------------------------


class Presence(_Message):
    kind: Literal["presence"] = "presence"
    state: Literal["online", "offline"]
    ts: datetime
    _check_ts = field_validator("ts")(_utc)


ServiceState = Literal["starting", "ready", "restarting", "failed", "stopped", "unknown"]


class Heartbeat(_Message):
    kind: Literal["heartbeat"] = "heartbeat"
    ts: datetime
    uptime_s: float = Field(ge=0)
    cpu_percent: float = Field(ge=0, le=100 * 256)
    memory_percent: float = Field(ge=0, le=100)
    disk_percent: float = Field(ge=0, le=100)
    temperature_c: float | None = Field(default=None, ge=-60, le=200)
    outbox_depth: int = Field(ge=0)
    oldest_queued_age_s: float | None = Field(default=None, ge=0)
    outbox_dropped_total: int = Field(default=0, ge=0)  # detail events the outbox ever had to drop
    outbox_full: bool = False  # the disk is full: events wait in memory
    versions: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=64)]] = \
        Field(default_factory=dict, max_length=64)
    services: dict[Annotated[str, Field(max_length=64)], ServiceState] = Field(default_factory=dict,
                                                                              max_length=32)
    _check_ts = field_validator("ts")(_utc)


# --- desired configuration and its acknowledgement --------------------------------------------------


class VoiceConfig(BaseModel):
    """The fields the cloud may set; a field left out stays under the device's local control."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    wake_word: Name | None = None
    wake_threshold: float | None = Field(default=None, gt=0, lt=1)
    stt_model: Name | None = None
    tts_voice: Name | None = None
    lang: Annotated[str, Field(max_length=16)] | None = None
    silence_end: float | None = Field(default=None, ge=0.2, le=3.0)
    enabled_skills: list[Name] | None = Field(default=None, max_length=200)


class DesiredConfig(_Message):
    kind: Literal["desired_config"] = "desired_config"
    version: int = Field(ge=1)
    config: VoiceConfig


class ConfigAck(_Message):
    kind: Literal["config_ack"] = "config_ack"
    version: int = Field(ge=1)
    status: Literal["applied", "rejected"]
    reason: Text | None = None


# --- commands -----------------------------------------------------------------------------------------


class Command(_Message):
    kind: Literal["command"] = "command"
    command_id: UUID
    action: Literal["end_session", "speak", "tap_start", "tap_stop", "reload", "report_now"]
    args: dict[Annotated[str, Field(max_length=64)], Any] = Field(default_factory=dict, max_length=16)
    issued_at: datetime
    _check_ts = field_validator("issued_at")(_utc)


class CommandResult(_Message):
    kind: Literal["command_result"] = "command_result"
    command_id: UUID
    status: Literal["ok", "error", "rejected"]
    detail: Text | None = None


class TapFrame(_Message):
    """Bus messages streamed while a tap is on, filtered by type and rate-limited on the device."""

    kind: Literal["tap_frame"] = "tap_frame"
    ts: datetime
    messages: list[dict[str, Any]] = Field(max_length=100)
    suppressed: int = Field(default=0, ge=0)  # messages over the rate limit since the last frame
    _check_ts = field_validator("ts")(_utc)


Message = Annotated[
    EventBatch | Presence | Heartbeat | DesiredConfig | ConfigAck | Command | CommandResult | TapFrame,
    Field(discriminator="kind"),
]
_MESSAGE = TypeAdapter(Message)


def encode(message: BaseModel) -> bytes:
    data = message.model_dump_json(exclude_none=True).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return data


def decode(payload: bytes) -> BaseModel:
    """Parse and validate one payload; raises MessageError with a reason fit for a log line."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError(f"payload of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MessageError("not a JSON object")
    if raw.get("v") != VERSION:
        raise MessageError(f"unsupported version {raw.get('v')!r}; this side speaks v{VERSION}")
    try:
        return _MESSAGE.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if loc and loc[0] == raw.get("kind"):
            loc = loc[1:]  # the union's tag, not a field
        where = ".".join(str(p) for p in loc)
        raise MessageError(f"invalid {raw.get('kind', 'message')}: {where}: {first['msg']}") from exc
