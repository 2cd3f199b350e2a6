"""Message schemas of the wire contract (pydantic v2), shared by device and cloud.

Every message carries ``v`` (the wire version it was written in) and is rejected whole when it breaks
the schema: nothing is half-stored. Readers tolerate what they do not know: a field this release has
not heard of is ignored and reported (``read(...).unknown``), so a newer peer can add fields without
breaking an older one (protocol/versions.py has the rules). Every event has an ``event_id`` unique
worldwide (UUIDv7: time-ordered, so stores index it well), a per-device monotonic ``seq`` and a UTC
timestamp. Sizes are bounded so a single message can never exhaust a broker, a worker or a database row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
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

from protocol.versions import READS, VERSION, Peer, VersionMismatch

MAX_MESSAGE_BYTES = 256 * 1024
MAX_EVENTS_PER_BATCH = 500
MAX_TEXT = 2000  # characters of a transcript or an answer

Text = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Reason(StrEnum):
    """Why a payload was refused: a stable code to count and branch on (the message text is for people)."""

    OVERSIZED = "oversized"              # over MAX_MESSAGE_BYTES
    MALFORMED = "malformed"              # not JSON, or not a JSON object
    WRONG_VERSION = "wrong_version"      # a wire version this side does not read
    UNKNOWN_KIND = "unknown_kind"        # a message kind (or event type) this side does not know
    INVALID = "invalid"                  # the right kind and version, but a field breaks the schema


class MessageError(ValueError):
    """A message that breaks the contract: ``reason`` is the code, the text says why in a log line."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def since(release: str) -> dict[str, Any]:
    """Mark a field added after 0.1.0: ``Field(default=None, json_schema_extra=since("0.2.0"))``.

    A strict (0.1.0) reader refuses a message with a field it does not know, so ``encode(..., peer)``
    leaves out every field its peer's release does not read. Every field added from now on must be
    optional and carry this marker (tests/protocol/test_evolution.py checks both).
    """
    return {"since": release}


_TOLERANT = ConfigDict(extra="ignore", frozen=True)


class _Message(BaseModel):
    model_config = _TOLERANT
    v: int = Field(default=VERSION, ge=1)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    return value.astimezone(UTC)


# --- events ------------------------------------------------------------------------------------------


class _Event(BaseModel):
    model_config = _TOLERANT
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
    # Which stage of the device's intent pipeline matched (an open set: "padacioso_high", "adapt_high",
    # "semantic", ...) and how sure it was, 0-1 (since 0.2.0; the cloud's intent analytics use them).
    stage: Annotated[str, Field(max_length=64)] | None = Field(default=None, json_schema_extra=since("0.2.0"))
    confidence: float | None = Field(default=None, ge=0, le=1, json_schema_extra=since("0.2.0"))


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


Short = Annotated[str, Field(max_length=64)]


class SkillInfo(BaseModel):
    model_config = _TOLERANT
    id: Name
    version: Short | None = None


class Capabilities(BaseModel):
    """What a device can do, announced with its ``online`` presence (since 0.2.0) and again whenever it
    changes, so the cloud offers and sends it only what it supports. A device that announces nothing is
    a 0.1.0 device: the cloud assumes what 0.1.0 could do (cloud/capabilities.py)."""

    model_config = _TOLERANT
    release: Short                                                    # the device's VoxFleet release
    protocol: list[int] = Field(min_length=1, max_length=8)           # wire versions it reads
    config_fields: list[Short] = Field(default_factory=list, max_length=100)  # VoiceConfig fields it applies
    commands: list[Short] = Field(default_factory=list, max_length=100)       # Command actions it runs
    engines: dict[Short, list[Short]] = Field(default_factory=dict, max_length=16)  # stt, tts, wake_word, ...
    stt_models: list[Short] = Field(default_factory=list, max_length=64)
    voices: list[Short] = Field(default_factory=list, max_length=256)
    wake_words: list[Short] = Field(default_factory=list, max_length=64)
    skills: list[SkillInfo] = Field(default_factory=list, max_length=500)
    features: list[Short] = Field(default_factory=list, max_length=64)


class Presence(_Message):
    kind: Literal["presence"] = "presence"
    state: Literal["online", "offline"]
    ts: datetime
    capabilities: Capabilities | None = Field(default=None, json_schema_extra=since("0.2.0"))
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
    # Fields of the cloud's messages this device did not know and ignored, since its agent started.
    unknown_fields_total: int | None = Field(default=None, ge=0, json_schema_extra=since("0.2.0"))
    _check_ts = field_validator("ts")(_utc)


# --- desired configuration and its acknowledgement --------------------------------------------------


class VoiceConfig(BaseModel):
    """The fields the cloud may set; a field left out stays under the device's local control."""

    model_config = _TOLERANT
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
    # Fields of the desired config this device does not know (a newer cloud's): left alone, not applied.
    ignored: list[Short] | None = Field(default=None, max_length=100, json_schema_extra=since("0.2.0"))


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


def _since(field: Any) -> str | None:
    extra = field.json_schema_extra
    return extra.get("since") if isinstance(extra, dict) else None


def _for_peer(model: BaseModel, data: Any, peer: Peer) -> Any:
    """``data`` (the JSON form of ``model``) without the fields ``peer``'s release does not read."""
    if not isinstance(data, dict):
        return data
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        if key not in data:
            continue
        added = _since(field)
        if added is not None and not peer.knows(added):
            del data[key]
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            data[key] = _for_peer(value, data[key], peer)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            data[key] = [_for_peer(item, raw, peer) for item, raw in zip(value, data[key], strict=True)]
    return data


def _event_fields_since() -> dict[str, tuple[tuple[str, str], ...]]:
    """Per event type, its fields added since 0.1.0 and the release that added each."""
    found = {}
    for event in get_args(get_args(Event)[0]):
        added = tuple((field.alias or name, _since(field)) for name, field in event.model_fields.items()
                      if _since(field) is not None)
        if added:
            found[event.model_fields["type"].default] = added
    return found


_EVENT_SINCE = _event_fields_since()


def event_for_peer(payload: str, peer: Peer) -> str:
    """One stored event's JSON (as the outbox keeps it) without the fields ``peer`` does not read: the
    outbox sends stored events as they are, so the leaving-out ``encode`` does for messages happens here."""
    if not _EVENT_SINCE:
        return payload
    event = json.loads(payload)
    added = _EVENT_SINCE.get(event.get("type"), ())
    drop = [key for key, release in added if key in event and not peer.knows(release)]
    if not drop:
        return payload
    for key in drop:
        del event[key]
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def encode(message: BaseModel, peer: Peer | None = None) -> bytes:
    """The message as it goes on the wire to ``peer`` (None: a peer of this release).

    For an older peer the fields its release does not read are left out (a 0.1.0 reader refuses the
    whole message over one field it does not know), and ``v`` is the highest version both speak.
    """
    if peer is None:
        data = message.model_dump_json(exclude_none=True).encode()
    else:
        raw = _for_peer(message, message.model_dump(mode="json", exclude_none=True), peer)
        if "v" in raw:
            try:
                raw["v"] = peer.version()
            except VersionMismatch as exc:
                raise MessageError(Reason.WRONG_VERSION, str(exc)) from None
        data = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(Reason.OVERSIZED,
                           f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return data


@dataclass(frozen=True)
class Decoded:
    """A validated message and the fields it carried that this release does not know (ignored), as
    dotted paths such as ``heartbeat.gpu_percent`` or ``event_batch.events.3.emotion``."""

    message: BaseModel
    unknown: tuple[str, ...] = ()


def _unknown(model: BaseModel, raw: Any, path: str) -> list[str]:
    """The keys of ``raw`` that ``model`` has no field for, recursively (free-form dicts excepted)."""
    if not isinstance(raw, dict):
        return []
    fields = type(model).model_fields
    known = {field.alias or name: name for name, field in fields.items()}
    found = []
    for key, value in raw.items():
        if key not in known:
            found.append(f"{path}.{key}")
            continue
        attr = getattr(model, known[key])
        if isinstance(attr, BaseModel):
            found += _unknown(attr, value, f"{path}.{key}")
        elif isinstance(attr, list) and isinstance(value, list):
            for index, (item, item_raw) in enumerate(zip(attr, value, strict=False)):
                if isinstance(item, BaseModel):
                    found += _unknown(item, item_raw, f"{path}.{key}.{index}")
    return found


_KINDS = frozenset(get_args(get_args(Message)[0]))
_KIND_NAMES = frozenset(cls.model_fields["kind"].default for cls in _KINDS)
_EVENT_TYPES = frozenset(cls.model_fields["type"].default for cls in get_args(get_args(Event)[0]))


def read(payload: bytes) -> Decoded:
    """Parse and validate one payload; raises MessageError with a reason code and a log-line text."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError(Reason.OVERSIZED,
                           f"payload of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(Reason.MALFORMED, f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MessageError(Reason.MALFORMED, "not a JSON object")
    version = raw.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version not in READS:
        raise MessageError(Reason.WRONG_VERSION,
                           f"unsupported version {version!r}; this side reads "
                           f"{', '.join(f'v{v}' for v in sorted(READS))}")
    kind = raw.get("kind")
    if kind not in _KIND_NAMES:
        raise MessageError(Reason.UNKNOWN_KIND, f"unknown message kind {kind!r}")
    if kind == "event_batch" and isinstance(raw.get("events"), list):
        for index, event in enumerate(raw["events"]):
            if isinstance(event, dict) and event.get("type") not in _EVENT_TYPES:
                raise MessageError(Reason.UNKNOWN_KIND,
                                   f"event_batch: events.{index}: unknown event type {event.get('type')!r}")
    try:
        message = _MESSAGE.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if loc and loc[0] == kind:
            loc = loc[1:]  # the union's tag, not a field
        if len(loc) > 2 and loc[0] == "events" and isinstance(loc[1], int):
            loc = loc[:2] + loc[3:]  # events.3.<type tag>.field -> events.3.field
        where = ".".join(str(p) for p in loc)
        raise MessageError(Reason.INVALID, f"invalid {kind}: {where}: {first['msg']}") from exc
    return Decoded(message, tuple(_unknown(message, raw, str(kind))))


def decode(payload: bytes) -> BaseModel:
    """``read(payload).message``: for callers that have no use for the unknown fields."""
    return read(payload).message
