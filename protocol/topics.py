"""MQTT topics of the VoxFleet wire contract: built in one place, parsed in one place.

A device's identity is the ``device_id`` segment of the topic it publishes on, which the broker's
ACL ties to the device's own credentials; no payload field is ever trusted for it (docs/design.md).

    voxfleet/v1/devices/{device_id}/events          up    event batches, QoS 1
    voxfleet/v1/devices/{device_id}/presence        up    retained, also the Last Will
    voxfleet/v1/devices/{device_id}/heartbeat       up    QoS 0
    voxfleet/v1/devices/{device_id}/config/ack      up    QoS 1
    voxfleet/v1/devices/{device_id}/commands/result up    QoS 1
    voxfleet/v1/devices/{device_id}/tap             up    QoS 0, bus-tap frames
    voxfleet/v1/devices/{device_id}/config/desired  down  retained, QoS 1
    voxfleet/v1/devices/{device_id}/commands        down  QoS 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "voxfleet/v1/devices"
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{2,63}$")


class Channel(StrEnum):
    EVENTS = "events"
    PRESENCE = "presence"
    HEARTBEAT = "heartbeat"
    CONFIG_ACK = "config/ack"
    COMMAND_RESULT = "commands/result"
    TAP = "tap"
    DESIRED_CONFIG = "config/desired"
    COMMANDS = "commands"

    @property
    def upstream(self) -> bool:
        return self not in (Channel.DESIRED_CONFIG, Channel.COMMANDS)


class TopicError(ValueError):
    """A topic that is not part of the contract."""


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID.match(device_id or ""):
        raise TopicError(f"invalid device id {device_id!r}: 3-64 of a-z, 0-9, '-', '_'")
    return device_id


def topic(device_id: str, channel: Channel) -> str:
    return f"{PREFIX}/{check_device_id(device_id)}/{channel.value}"


def device_filter(device_id: str) -> str:
    """Every topic of one device: what its broker ACL allows, and nothing else."""
    return f"{PREFIX}/{check_device_id(device_id)}/#"


def upstream_filter(channel: Channel, shared_group: str | None = None) -> str:
    """Subscription for one up channel of all devices, optionally as an MQTT shared subscription."""
    base = f"{PREFIX}/+/{channel.value}"
    return f"$share/{shared_group}/{base}" if shared_group else base


@dataclass(frozen=True)
class ParsedTopic:
    device_id: str
    channel: Channel


_CHANNELS = {c.value: c for c in Channel}


def parse(topic_name: str) -> ParsedTopic:
    if not topic_name.startswith(PREFIX + "/"):
        raise TopicError(f"not a VoxFleet topic: {topic_name!r}")
    rest = topic_name[len(PREFIX) + 1:]
    device_id, _, channel = rest.partition("/")
    if channel not in _CHANNELS:
        raise TopicError(f"unknown channel {channel!r} in {topic_name!r}")
    return ParsedTopic(check_device_id(device_id), _CHANNELS[channel])
