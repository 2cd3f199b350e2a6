"""The device's one MQTT connection to the cloud (paho-mqtt 2.x, MQTT 3.1.1 on the wire).

Persistent session (``clean_session=False``), per-device credentials, TLS for ``mqtts://`` URLs,
presence as a retained message with a Last Will saying ``offline``, and reconnects with capped
exponential backoff (paho's) plus jitter (ours: the base delay is re-drawn after every drop, so a
fleet that lost its broker does not come back in lock-step).

The same connection receives the down channels (desired configuration, commands). Their payloads
go to ``on_down(channel, payload)`` untouched: the agent validates them, because a bad message
from the cloud must be logged and answered, never crash the network thread.

What the device says when it comes online (its presence, with its capabilities for clouds that read
them) is the agent's to build: ``online()`` is asked at every connection.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from protocol import messages
from protocol.topics import Channel, TopicError, parse, topic
from protocol.versions import Peer

MIN_BACKOFF, MAX_BACKOFF = 1.0, 60.0


class LinkError(RuntimeError):
    """The cloud's broker cannot be reached or refused us; the message says which."""


@dataclass(frozen=True)
class LinkConfig:
    device_id: str
    broker_url: str  # mqtt://host:1883 or mqtts://host:8883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 30
    cloud_url: str | None = None  # the cloud's web address (its health says which release it runs)

    @classmethod
    def from_file(cls, data: dict) -> LinkConfig:
        return cls(device_id=data["device_id"], broker_url=data["broker_url"], username=data.get("username"),
                   password=data.get("password"), ca_file=data.get("ca_file"), cloud_url=data.get("cloud"))


def _presence(state: str) -> bytes:
    """A bare presence: what every release reads (also the Last Will, fixed at connect time)."""
    return messages.encode(messages.Presence(state=state, ts=datetime.now(UTC)))


DOWN_CHANNELS = (Channel.DESIRED_CONFIG, Channel.COMMANDS)


class MqttLink:
    def __init__(self, config: LinkConfig,
                 on_down: Callable[[Channel, bytes], None] | None = None,
                 online: Callable[[], bytes] | None = None,
                 on_connected: Callable[[], None] | None = None) -> None:
        self.config = config
        self.on_down = on_down
        self.online = online or (lambda: _presence("online"))
        self.on_connected = on_connected
        url = urlparse(config.broker_url)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise LinkError(f"broker URL must look like mqtt://host:1883 or mqtts://host:8883, "
                            f"not {config.broker_url!r}")
        self.host, self.port = url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.connected = threading.Event()
        self.refused: str | None = None
        # manual_ack: a command is acknowledged to the broker only once the agent has recorded it,
        # so one that arrives as the agent dies is delivered again rather than lost.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"voxfleet-{config.device_id}",
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if config.username:
            client.username_pw_set(config.username, config.password)
        if url.scheme == "mqtts":
            client.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(topic(config.device_id, Channel.PRESENCE), _presence("offline"), qos=1, retain=True)
        client.reconnect_delay_set(MIN_BACKOFF, MAX_BACKOFF)
        client.max_inflight_messages_set(20)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        self.refused = None
        client.publish(topic(self.config.device_id, Channel.PRESENCE), self.online(), qos=1, retain=True)
        if self.on_down is not None:
            # The persistent session keeps these across reconnects; asking again costs nothing
            # and covers a broker that lost its sessions.
            client.subscribe([(topic(self.config.device_id, c), 1) for c in DOWN_CHANNELS])
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected()

    def _on_message(self, client, userdata, message) -> None:
        try:
            parsed = parse(message.topic)
            if parsed.device_id == self.config.device_id and parsed.channel in DOWN_CHANNELS:
                self.on_down(parsed.channel, message.payload)
        except TopicError:
            pass
        except Exception:  # never let one message stop the network loop (nor come back for ever)
            logging.getLogger(__name__).exception("handling a message from the cloud failed")
        finally:
            if message.qos:
                client.ack(message.mid, message.qos)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        client.reconnect_delay_set(random.uniform(MIN_BACKOFF, 2 * MIN_BACKOFF), MAX_BACKOFF)

    def begin(self) -> None:
        """Start connecting in the background; paho keeps retrying (with our backoff) until closed."""
        try:
            self.client.connect_async(self.host, self.port, keepalive=self.config.keepalive)
        except (OSError, ValueError) as exc:
            raise LinkError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        self.client.loop_start()

    def start(self, timeout: float = 10.0) -> None:
        """Connect (and keep reconnecting in the background); raises LinkError if not up in time."""
        self.begin()
        if not self.connected.wait(timeout):
            reason = self.refused or "no answer"
            self.client.loop_stop()
            raise LinkError(f"could not connect to the broker at {self.host}:{self.port} "
                            f"within {timeout:.0f}s ({reason})")

    def publish(self, channel: Channel, payload: bytes, qos: int = 1, retain: bool = False):
        return self.client.publish(topic(self.config.device_id, channel), payload, qos=qos, retain=retain)

    def close(self, timeout: float = 5.0) -> None:
        """Clean shutdown: a retained ``offline`` (the Last Will covers an unclean one)."""
        if self.connected.is_set():
            info = self.publish(Channel.PRESENCE, _presence("offline"), retain=True)
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()


def drain(store, link: MqttLink, batch_events: int = 500, ack_timeout: float = 15.0,
          max_age: float = 0.0, peer: Peer | None = None) -> int:
    """Send the outbox in seq order, one QoS 1 batch in flight; delete only what the broker acked.

    A batch goes when it is full (``batch_events`` or the size limit) or when its oldest event has
    waited ``max_age`` seconds; a partial batch of younger events waits for company. Returns the
    number of events delivered. Raises LinkError when the broker stops acknowledging; whatever
    was not acknowledged stays in the outbox with its event ids, so a retry resends the same events.
    ``peer``: the cloud as far as the device knows it, for the batch's wire version.
    """
    version = peer.version() if peer is not None else messages.VERSION
    sent = 0
    max_bytes = messages.MAX_MESSAGE_BYTES - 16 * 1024
    while True:
        rows = store.peek(limit=batch_events, max_bytes=max_bytes)
        if not rows:
            return sent
        full = len(rows) >= batch_events or sum(len(r.payload) for r in rows) > max_bytes // 2
        if not full and time.time() - rows[0].created < max_age:
            return sent
        dropped = store.dropped_unreported()
        # The stored payloads are already the events' JSON: join them rather than re-serialise.
        events = ",".join(r.payload for r in rows)
        if peer is not None:  # an older cloud: leave out the event fields its release does not read
            events = ",".join(messages.event_for_peer(r.payload, peer) for r in rows)
        body = f'{{"v":{version},"kind":"event_batch","dropped":{dropped},"events":[{events}]}}'.encode()
        info = link.publish(Channel.EVENTS, body)
        try:
            info.wait_for_publish(ack_timeout)
        except RuntimeError as exc:  # paho: not connected / queue full
            raise LinkError(f"publishing failed: {exc}") from exc
        if not info.is_published():
            raise LinkError(f"the broker did not acknowledge a batch within {ack_timeout:.0f}s")
        store.ack([r.seq for r in rows], dropped_reported=dropped)
        sent += len(rows)


def load_link_config(path) -> LinkConfig:
    try:
        return LinkConfig.from_file(json.loads(open(path, encoding="utf-8").read()))
    except FileNotFoundError as exc:
        raise LinkError(f"this device is not paired: {path} does not exist") from exc
    except (ValueError, KeyError) as exc:
        raise LinkError(f"{path} is not a valid pairing record ({exc})") from exc
