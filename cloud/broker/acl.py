"""The one confinement policy both brokers enforce, derived from the wire contract.

Mosquitto (through Dynamic Security roles) and the embedded broker (through its topic plugin) are
given the same grants from here, so a device is confined identically in production and on a laptop.
A device's identity is the ``device_id`` in its topics (protocol/topics.py); these grants are what
make that trustworthy: its credentials can touch no other device's topics.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.topics import PREFIX, Channel, check_device_id, device_filter, topic

UP_CHANNELS: tuple[Channel, ...] = tuple(c for c in Channel if c.upstream)
DOWN_CHANNELS: tuple[Channel, ...] = tuple(c for c in Channel if not c.upstream)
SHARE_PREFIX = "$share/"
# The MQTT client id a device connects with (device/sync/link.py builds the same; it belongs in protocol/).
DEVICE_CLIENT_ID = "voxfleet-{device_id}"


@dataclass(frozen=True)
class Grants:
    """Topic filters an account may publish to, subscribe with, and be delivered messages from."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    receive: tuple[str, ...]

    def may_publish(self, topic_name: str) -> bool:
        return any(matches(pattern, topic_name) for pattern in self.publish)

    def may_receive(self, topic_name: str) -> bool:
        return any(matches(pattern, topic_name) for pattern in self.receive)

    def may_subscribe(self, topic_filter: str) -> bool:
        return any(covers(pattern, topic_filter) for pattern in self.subscribe)


def device_grants(device_id: str) -> Grants:
    """Up channels to send, down channels to hear; the whole-device filter is allowed to subscribe
    with (protocol.topics.device_filter), but only down-channel messages are ever delivered."""
    check_device_id(device_id)
    down = tuple(topic(device_id, c) for c in DOWN_CHANNELS)
    return Grants(
        publish=tuple(topic(device_id, c) for c in UP_CHANNELS),
        subscribe=(*down, device_filter(device_id)),
        receive=down,
    )


def device_client_id(device_id: str) -> str:
    """The only client id a device's credentials may connect with.

    Brokers let a new connection with a client id take over the session of that id; binding ids to
    accounts stops one device from knocking another off (or taking its queued messages).
    """
    return DEVICE_CLIENT_ID.format(device_id=check_device_id(device_id))


def service_grants() -> Grants:
    """The cloud's services read every device's up channels and write every device's down channels.

    They never publish on an up channel, so nothing can forge a device's events, even from the cloud.
    Ingest workers may share a subscription (``$share/{group}/...``) where the broker has them.
    """
    up = tuple(f"{PREFIX}/+/{c.value}" for c in UP_CHANNELS)
    return Grants(
        publish=tuple(f"{PREFIX}/+/{c.value}" for c in DOWN_CHANNELS),
        subscribe=(*up, *(f"{SHARE_PREFIX}+/{f}" for f in up)),
        receive=up,
    )


def matches(pattern: str, topic_name: str) -> bool:
    """MQTT matching of a concrete topic against a filter (``+`` one level, ``#`` the rest)."""
    if topic_name.startswith("$") and pattern[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    p_levels, t_levels = pattern.split("/"), topic_name.split("/")
    for i, level in enumerate(p_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or level not in ("+", t_levels[i]):
            return False
    return len(p_levels) == len(t_levels)


def covers(pattern: str, topic_filter: str) -> bool:
    """Whether every topic ``topic_filter`` can match is also matched by ``pattern``.

    A subscription is allowed only when it cannot reach beyond the grant: ``devices/+/events``
    is not covered by ``devices/a/events``, and ``devices/a/#`` is not covered by ``devices/a/events``.
    """
    p_levels, f_levels = pattern.split("/"), topic_filter.split("/")
    for i, level in enumerate(p_levels):
        if level == "#":
            return True
        if i >= len(f_levels):
            return False
        wanted = f_levels[i]
        if wanted == "#":
            return False
        if level == "+":
            continue
        if wanted != level:  # a '+' in the filter is wider than a literal grant level
            return False
    return len(p_levels) == len(f_levels)
