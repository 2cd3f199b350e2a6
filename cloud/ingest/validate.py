"""Checking one MQTT message against the wire contract, before anything touches the database.

The device comes from the topic (the broker's ACL ties it to the device's credentials), never from
the payload; the payload must be the kind its channel carries. A message that fails is rejected
for good with a reason from ``Reason`` (counted per reason, logged without the payload) and is
acknowledged, so the broker does not deliver it again for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from protocol import messages
from protocol.topics import Channel, TopicError, parse


class Reason(StrEnum):
    BAD_TOPIC = "bad_topic"                # not a VoxFleet topic, or a malformed device id
    WRONG_CHANNEL = "wrong_channel"        # a down channel, or a kind that its channel does not carry
    # The protocol's own reasons (protocol.messages.Reason), under the same codes:
    OVERSIZED = "oversized"                # over protocol.messages.MAX_MESSAGE_BYTES
    MALFORMED = "malformed"                # not a JSON object
    WRONG_VERSION = "wrong_version"        # a wire version this side does not read
    UNKNOWN_KIND = "unknown_kind"          # a message kind or event type this release does not know
    INVALID = "invalid"                    # JSON, right version, but breaks the schema
    UNKNOWN_DEVICE = "unknown_device"      # no device has this topic id
    UNPAIRED_DEVICE = "unpaired_device"    # the device was unpaired
    TENANT_SUSPENDED = "tenant_suspended"  # its tenant is suspended
    UNKNOWN_COMMAND = "unknown_command"    # a result for a command this device was never sent
    STORAGE_REFUSED = "storage_refused"    # valid by the schema, refused by the database


# The one kind each up channel carries.
KINDS: dict[Channel, str] = {
    Channel.EVENTS: "event_batch",
    Channel.PRESENCE: "presence",
    Channel.HEARTBEAT: "heartbeat",
    Channel.CONFIG_ACK: "config_ack",
    Channel.COMMAND_RESULT: "command_result",
    Channel.TAP: "tap_frame",
}


@dataclass(frozen=True)
class Inbound:
    """A message as it came off the wire; ``generation`` is the connection it arrived on (acks must
    go back on that same connection: packet ids are per connection)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    generation: int = 0


@dataclass(frozen=True)
class Accepted:
    inbound: Inbound
    device_key: str
    channel: Channel
    message: BaseModel
    unknown: tuple[str, ...] = ()  # fields this release does not know: ignored (and counted)


class Rejected(Exception):  # noqa: N818  (a verdict, raised and caught within ingest)
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check(inbound: Inbound) -> Accepted:
    """The validated message, or ``Rejected``. Decoding is protocol.messages.read, unchanged."""
    try:
        parsed = parse(inbound.topic)
    except TopicError as exc:
        raise Rejected(Reason.BAD_TOPIC, str(exc)) from None
    expected = KINDS.get(parsed.channel)
    if expected is None:
        raise Rejected(Reason.WRONG_CHANNEL, f"{parsed.channel.value} is a down channel")
    if len(inbound.payload) > messages.MAX_MESSAGE_BYTES:
        raise Rejected(Reason.OVERSIZED, f"payload of {len(inbound.payload)} bytes exceeds the "
                                         f"{messages.MAX_MESSAGE_BYTES}-byte limit")
    try:
        decoded = messages.read(inbound.payload)
    except messages.MessageError as exc:
        raise Rejected(Reason(exc.reason.value), exc.detail) from None
    kind = getattr(decoded.message, "kind", None)
    if kind != expected:
        raise Rejected(Reason.WRONG_CHANNEL, f"a {kind} on the {parsed.channel.value} channel "
                                             f"(it carries {expected})")
    return Accepted(inbound, parsed.device_id, parsed.channel, decoded.message, decoded.unknown)
