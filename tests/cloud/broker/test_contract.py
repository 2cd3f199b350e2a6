"""The confinement contract Mosquitto+dynsec and the embedded broker share, its helpers, and the
policy itself (cloud.broker.acl) tested on its own.

The contract runs in test_broker_dynsec.py and test_broker_embedded.py, each supplying a real
running broker: a test-owned Mosquitto on a free port (never the shared one on 1883) or the embedded
amqtt broker, with paho clients and the ``mosquitto_pub`` program.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud.broker.acl import covers, device_client_id, device_grants, matches, service_grants
from cloud.broker.admin import AccountExistsError, BrokerAdmin
from protocol.topics import Channel, topic, upstream_filter

WAIT = 10.0  # seconds to wait for something that should happen
QUIET = 1.0  # seconds to keep listening for something that must not happen, after a barrier


def secret() -> str:
    return f"pw-{uuid.uuid4().hex}"


class Probe:
    """A paho client (MQTT 3.1.1, as devices use) that records what it receives."""

    def __init__(self, port: int, username: str | None, password: str | None, client_id: str, *,
                 clean_session: bool = True, will: tuple[str, bytes] | None = None) -> None:
        self.port = port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self._connack: queue.Queue[Any] = queue.Queue()
        self._subacks: dict[int, list[Any]] = {}
        self._suback_ready = threading.Condition()
        self.disconnected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean_session, protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if username is not None:
            client.username_pw_set(username, password)
        if will:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p: self._connack.put(rc)
        client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.seen.append((message.topic, bytes(message.payload), bool(message.retain)))
        self.messages.put(message)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any],
                      props: Any) -> None:
        with self._suback_ready:
            self._subacks[mid] = codes
            self._suback_ready.notify_all()

    def connect(self) -> Any:
        """The CONNACK reason code; the network loop keeps running only when accepted."""
        self.disconnected.clear()
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        try:
            code = self._connack.get(timeout=WAIT)
        except queue.Empty:
            code = None
        if code is None or code.is_failure:
            self.disconnected.wait(WAIT)
            self.client.loop_stop()
        return code

    def subscribe(self, topic_filter: str, qos: int = 1) -> Any:
        result, mid = self.client.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        with self._suback_ready:
            assert self._suback_ready.wait_for(lambda: mid in self._subacks, WAIT), "no SUBACK"
            return self._subacks[mid][0]

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic_name, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published(), f"no PUBACK for {topic_name}"

    def expect(self, topic_name: str, payload: bytes, timeout: float = WAIT) -> mqtt.MQTTMessage:
        """Wait for this exact message; everything received meanwhile stays in ``seen``."""
        while True:
            message = self.messages.get(timeout=timeout)
            if message.topic == topic_name and message.payload == payload:
                return message

    def got(self, payload: bytes) -> bool:
        return any(p == payload for _, p, _ in list(self.seen))

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT, as a device losing power does (the Will fires)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Device:
    device_id: str
    username: str
    password: str

    @property
    def client_id(self) -> str:
        return device_client_id(self.device_id)

    def topic(self, channel: Channel) -> str:
        return topic(self.device_id, channel)


@dataclass
class BrokerUnderTest:
    """One running broker, its admin, and its service account, as a contract test needs them."""

    name: str
    port: int
    admin: BrokerAdmin
    service_username: str
    service_password: str
    broker_log: Callable[[], str] = lambda: ""
    probes: list[Probe] = field(default_factory=list)

    def device(self) -> Device:
        device_id = f"dev-{uuid.uuid4().hex[:12]}"
        device = Device(device_id, f"u-{device_id}", secret())
        self.admin.add_device(device.device_id, device.username, device.password)
        return device

    def probe(self, username: str | None, password: str | None, client_id: str | None = None,
              **kwargs: Any) -> Probe:
        probe = Probe(self.port, username, password, client_id or f"probe-{uuid.uuid4().hex[:10]}", **kwargs)
        self.probes.append(probe)
        return probe

    def connected(self, username: str | None, password: str | None, client_id: str | None = None,
                  **kwargs: Any) -> Probe:
        probe = self.probe(username, password, client_id, **kwargs)
        code = probe.connect()
        assert code is not None and not code.is_failure, f"{self.name}: {username} refused: {code}"
        return probe

    def device_client(self, device: Device, **kwargs: Any) -> Probe:
        return self.connected(device.username, device.password, device.client_id, **kwargs)

    def cloud(self) -> Probe:
        return self.connected(self.service_username, self.service_password)

    def service(self, channel: Channel = Channel.EVENTS) -> Probe:
        probe = self.cloud()
        assert not probe.subscribe(upstream_filter(channel)).is_failure
        return probe

    def close_probes(self) -> None:
        for probe in self.probes:
            probe.close()
        self.probes.clear()


def mosquitto_pub(port: int, device: Device, topic_name: str, payload: bytes, *, qos: int = 1,
                  retain: bool = False) -> subprocess.CompletedProcess[str]:
    """Publish as a device with the mosquitto_pub program, which works against any 3.1.1 broker."""
    program = shutil.which("mosquitto_pub")
    if program is None:
        pytest.fail("mosquitto_pub is not installed (Debian package mosquitto-clients)")
    args = [program, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv311", "-u", device.username,
            "-P", device.password, "-i", device.client_id, "-q", str(qos), "-t", topic_name, "-m",
            payload.decode()]
    if retain:
        args.append("-r")
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT * 2)


def barrier(sender: Probe, receiver: Probe, topic_name: str) -> None:
    """Publish a marker and wait until it arrives: whatever was sent earlier has been routed by then."""
    marker = f"barrier-{uuid.uuid4().hex}".encode()
    sender.publish(topic_name, marker)
    receiver.expect(topic_name, marker)


class BrokerContract:
    """The properties every VoxFleet broker must have; subclasses supply the ``broker`` fixture."""

    @pytest.fixture
    def broker(self) -> Iterator[BrokerUnderTest]:
        raise NotImplementedError("a broker test class supplies its running broker")

    def test_device_publishes_on_its_topic_and_the_service_receives_it(self, broker: BrokerUnderTest) -> None:
        service = broker.service(Channel.EVENTS)
        a = broker.device()
        device = broker.device_client(a)
        payload = f"events-{uuid.uuid4().hex}".encode()
        device.publish(a.topic(Channel.EVENTS), payload)
        assert service.expect(a.topic(Channel.EVENTS), payload).qos == 1

    def test_mosquitto_pub_as_one_device_on_anothers_topic_is_never_delivered(
            self, broker: BrokerUnderTest) -> None:
        service = broker.service(Channel.EVENTS)
        a, b = broker.device(), broker.device()
        forged = f"forged-by-a-{uuid.uuid4().hex}".encode()
        done = mosquitto_pub(broker.port, a, b.topic(Channel.EVENTS), forged)
        # It authenticated and sent the packet (MQTT 3.1.1 has no refusal for a PUBLISH) ...
        assert done.returncode == 0, done.stderr
        # ... and the control: the same command on A's own topic is delivered.
        own = f"own-{uuid.uuid4().hex}".encode()
        assert mosquitto_pub(broker.port, a, a.topic(Channel.EVENTS), own).returncode == 0
        service.expect(a.topic(Channel.EVENTS), own)
        # Now from one connection, forgeries then a barrier, so ordering is guaranteed.
        device = broker.device_client(a)
        device.publish(b.topic(Channel.EVENTS), forged)
        device.publish(b.topic(Channel.PRESENCE), forged, retain=True)
        barrier(device, service, a.topic(Channel.EVENTS))
        with pytest.raises(queue.Empty):
            service.expect(b.topic(Channel.EVENTS), forged, timeout=QUIET)
        assert not service.got(forged), f"{broker.name} delivered a forged message: {service.seen}"
        # The retained forgery was not kept either: a new subscriber to B's presence gets nothing.
        presence = broker.service(Channel.PRESENCE)
        barrier(device, presence, a.topic(Channel.PRESENCE))
        assert not presence.got(forged)

    def test_device_cannot_command_another_device(self, broker: BrokerUnderTest) -> None:
        a, b = broker.device(), broker.device()
        target = broker.device_client(b)
        assert not target.subscribe(b.topic(Channel.COMMANDS)).is_failure
        attacker = broker.device_client(a)
        forged = f"cmd-from-a-{uuid.uuid4().hex}".encode()
        attacker.publish(b.topic(Channel.COMMANDS), forged)
        attacker.publish(a.topic(Channel.COMMANDS), forged)  # nor forge commands to itself
        barrier(broker.cloud(), target, b.topic(Channel.COMMANDS))
        assert not target.got(forged)

    def test_device_cannot_subscribe_beyond_its_topics(self, broker: BrokerUnderTest) -> None:
        a, b = broker.device(), broker.device()
        device = broker.device_client(a)
        for stolen in (b.topic(Channel.COMMANDS), b.topic(Channel.DESIRED_CONFIG),
                       "voxfleet/v1/devices/+/commands", "voxfleet/v1/devices/#", "#",
                       upstream_filter(Channel.EVENTS), "$share/x/voxfleet/v1/devices/+/events"):
            assert device.subscribe(stolen).is_failure, f"{broker.name} let {a.device_id} subscribe {stolen}"
        assert not device.subscribe(a.topic(Channel.COMMANDS)).is_failure
        cloud = broker.cloud()
        secret_command = f"for-b-only-{uuid.uuid4().hex}".encode()
        cloud.publish(b.topic(Channel.COMMANDS), secret_command)
        barrier(cloud, device, a.topic(Channel.COMMANDS))
        assert not device.got(secret_command)

    def test_device_with_the_whole_device_filter_hears_only_its_down_channels(
            self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        device = broker.device_client(a)
        assert not device.subscribe(f"voxfleet/v1/devices/{a.device_id}/#").is_failure
        echo = f"own-event-{uuid.uuid4().hex}".encode()
        device.publish(a.topic(Channel.EVENTS), echo)
        barrier(broker.cloud(), device, a.topic(Channel.COMMANDS))
        assert not device.got(echo)

    def test_wrong_password_unknown_user_and_anonymous_are_refused(self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        for username, password in ((a.username, "not-the-password-at-all"), ("nobody-here", secret()),
                                   (None, None), (a.username, "")):
            code = broker.probe(username, password, a.client_id).connect()
            assert code is not None and code.is_failure, f"{broker.name} accepted {username!r}: {code}"
        # Right credentials, someone else's client id: refused too (ids are bound to accounts).
        b = broker.device()
        code = broker.probe(a.username, a.password, b.client_id).connect()
        assert code is not None and code.is_failure
        broker.device_client(a)  # the control: the right credentials and id are accepted

    def test_a_device_cannot_take_over_another_devices_connection(self, broker: BrokerUnderTest) -> None:
        a, b = broker.device(), broker.device()
        victim = broker.device_client(b)
        assert not victim.subscribe(b.topic(Channel.COMMANDS)).is_failure
        assert broker.probe(a.username, a.password, b.client_id).connect().is_failure
        barrier(broker.cloud(), victim, b.topic(Channel.COMMANDS))
        assert not victim.disconnected.is_set()

    def test_a_second_connection_replaces_the_first_and_removal_drops_it(
            self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        first = broker.device_client(a)
        second = broker.device_client(a)
        assert first.disconnected.wait(WAIT), f"{broker.name} kept two connections with one client id"
        assert not second.disconnected.is_set()
        broker.admin.remove_device(a.username)
        assert second.disconnected.wait(WAIT)

    def test_last_will_on_another_devices_topic_is_never_delivered(self, broker: BrokerUnderTest) -> None:
        presence = broker.service(Channel.PRESENCE)
        a, b = broker.device(), broker.device()
        forged = f"will-forged-{uuid.uuid4().hex}".encode()
        probe = broker.probe(a.username, a.password, a.client_id, will=(b.topic(Channel.PRESENCE), forged))
        code = probe.connect()  # the embedded broker refuses it; Mosquitto accepts and drops the Will
        if code is not None and not code.is_failure:
            probe.drop()
        # A legitimate Will is delivered: the control that shows Wills work at all.
        own = f"will-own-{uuid.uuid4().hex}".encode()
        honest = broker.device_client(a, will=(a.topic(Channel.PRESENCE), own))
        honest.drop()
        presence.expect(a.topic(Channel.PRESENCE), own)
        assert not presence.got(forged)

    def test_remove_device_drops_its_connection_and_refuses_it_afterwards(
            self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        device = broker.device_client(a)
        assert not device.disconnected.is_set()
        assert broker.admin.remove_device(a.username) is True
        assert device.disconnected.wait(WAIT), f"{broker.name} kept the revoked device connected"
        code = broker.probe(a.username, a.password, a.client_id).connect()
        assert code is not None and code.is_failure
        assert broker.admin.remove_device(a.username) is False

    def test_disabled_device_is_dropped_and_comes_back_when_enabled(self, broker: BrokerUnderTest) -> None:
        """A suspended tenant's devices: refused while disabled, no re-pairing once enabled again."""
        a = broker.device()
        device = broker.device_client(a)
        assert broker.admin.disable_device(a.username) is True
        assert device.disconnected.wait(WAIT), f"{broker.name} kept the disabled device connected"
        code = broker.probe(a.username, a.password, a.client_id).connect()
        assert code is not None and code.is_failure
        assert broker.admin.enable_device(a.username) is True
        code = broker.probe(a.username, a.password, a.client_id).connect()
        assert code is not None and not code.is_failure
        assert broker.admin.disable_device("no-such-account") is False

    def test_adding_an_existing_username_is_refused(self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        with pytest.raises(AccountExistsError):
            broker.admin.add_device(a.device_id, a.username, secret())
        broker.device_client(a)  # the original password still works

    def test_retained_desired_config_reaches_a_device_that_subscribes_later(
            self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        config = f'{{"version": 1, "x": "{uuid.uuid4().hex}"}}'.encode()
        broker.cloud().publish(a.topic(Channel.DESIRED_CONFIG), config, retain=True)
        device = broker.device_client(a)
        assert not device.subscribe(a.topic(Channel.DESIRED_CONFIG)).is_failure
        assert device.expect(a.topic(Channel.DESIRED_CONFIG), config).retain

    def test_qos1_command_waits_for_a_persistent_session(self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        device = broker.device_client(a, clean_session=False)
        assert not device.subscribe(a.topic(Channel.COMMANDS), qos=1).is_failure
        device.close()
        command = f"cmd-{uuid.uuid4().hex}".encode()
        broker.cloud().publish(a.topic(Channel.COMMANDS), command, qos=1)
        back = broker.device_client(a, clean_session=False)
        assert back.expect(a.topic(Channel.COMMANDS), command).qos == 1

    def test_retained_messages_of_another_device_are_not_replayed(self, broker: BrokerUnderTest) -> None:
        a, b = broker.device(), broker.device()
        cloud = broker.cloud()
        b_config = f"b-only-{uuid.uuid4().hex}".encode()
        cloud.publish(b.topic(Channel.DESIRED_CONFIG), b_config, retain=True)
        b_client = broker.device_client(b)  # B's subscription exists in the broker from now on
        assert not b_client.subscribe(b.topic(Channel.DESIRED_CONFIG)).is_failure
        b_client.expect(b.topic(Channel.DESIRED_CONFIG), b_config)
        a_client = broker.device_client(a)
        assert not a_client.subscribe(a.topic(Channel.COMMANDS)).is_failure
        barrier(cloud, a_client, a.topic(Channel.COMMANDS))
        assert not a_client.got(b_config)

    def test_service_cannot_forge_device_events(self, broker: BrokerUnderTest) -> None:
        a = broker.device()
        service = broker.service(Channel.EVENTS)
        forged = f"cloud-forged-{uuid.uuid4().hex}".encode()
        service.publish(a.topic(Channel.EVENTS), forged)
        barrier(broker.device_client(a), service, a.topic(Channel.EVENTS))
        assert not service.got(forged)

    def test_passwords_never_reach_a_log(self, broker: BrokerUnderTest,
                                         caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        a = broker.device()
        broker.device_client(a).publish(a.topic(Channel.EVENTS), b"x")
        broker.probe(a.username, a.password + "-wrong", a.client_id).connect()
        broker.admin.remove_device(a.username)
        assert a.username in caplog.text + broker.broker_log()  # the logs were captured at all
        for text in (caplog.text, broker.broker_log()):
            assert a.password not in text
            assert broker.service_password not in text


# --- the policy on its own -----------------------------------------------------------------------------


def test_device_grants_are_its_own_topics_only() -> None:
    grants = device_grants("dev-a")
    assert grants.may_publish("voxfleet/v1/devices/dev-a/events")
    assert grants.may_publish("voxfleet/v1/devices/dev-a/commands/result")
    assert not grants.may_publish("voxfleet/v1/devices/dev-b/events")
    assert not grants.may_publish("voxfleet/v1/devices/dev-a/commands")  # down: the cloud's
    assert not grants.may_publish("voxfleet/v1/devices/dev-a/config/desired")
    assert grants.may_subscribe("voxfleet/v1/devices/dev-a/commands")
    assert grants.may_subscribe("voxfleet/v1/devices/dev-a/#")
    for wider in ("voxfleet/v1/devices/+/commands", "voxfleet/v1/devices/#", "#", "+/+/+/dev-a/commands",
                  "voxfleet/v1/devices/dev-b/commands", "voxfleet/v1/+/dev-a/commands"):
        assert not grants.may_subscribe(wider), wider
    assert grants.may_receive("voxfleet/v1/devices/dev-a/config/desired")
    assert not grants.may_receive("voxfleet/v1/devices/dev-a/events")


def test_service_grants_read_up_and_write_down() -> None:
    grants = service_grants()
    assert grants.may_subscribe("voxfleet/v1/devices/+/events")
    assert grants.may_subscribe("$share/ingest/voxfleet/v1/devices/+/events")
    assert grants.may_subscribe("voxfleet/v1/devices/dev-a/presence")
    assert not grants.may_subscribe("voxfleet/v1/devices/#")
    assert not grants.may_subscribe("voxfleet/v1/devices/+/commands")
    assert grants.may_publish("voxfleet/v1/devices/dev-a/commands")
    assert not grants.may_publish("voxfleet/v1/devices/dev-a/events")
    assert grants.may_receive("voxfleet/v1/devices/dev-a/heartbeat")


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("a/+/c", "a/b/c", True), ("a/#", "a", True), ("a/#", "a/b/c", True), ("a/+", "a/b/c", False),
    ("#", "$SYS/x", False), ("a/b", "a/b/c", False), ("a/b/c", "a/b", False),
])
def test_matches(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "wanted", "expected"), [
    ("a/+/c", "a/+/c", True), ("a/+/c", "a/x/c", True), ("a/x/c", "a/+/c", False), ("a/#", "a/x/#", True),
    ("a/x", "a/#", False), ("a/+", "a/#", False), ("a/#", "a", True), ("a/b", "a/b/c", False),
])
def test_covers(pattern: str, wanted: str, expected: bool) -> None:
    assert covers(pattern, wanted) is expected

