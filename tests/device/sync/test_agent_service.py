"""The supervised agent takes orders from the cloud over the real Mosquitto: desired configuration
(applied, rejected, rolled back), commands with exactly one result each, the bus tap, and bad
messages on the down topics that are answered and survived.

A small stack (messagebus, volume service, agent) under the real supervisor; the voice services
are left out so this runs in seconds. tests/device/voice/test_voice_orders.py does the same with the voice.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from device.paths import DevicePaths
from device.settings import DeviceSettings, save_settings
from device.stack.supervisor import SERVICES, Supervisor
from protocol import messages
from protocol.topics import Channel, topic
from tests.conftest import free_port
from tests.device.sync.test_sync import Subscriber

SMALL = tuple(s for s in SERVICES if s.name in ("messagebus", "volume", "agent"))


class Cloud:
    """The cloud's side of one device, as the ingest/API will do it: publish orders, read answers."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.sub = Subscriber(f"voxfleet/v1/devices/{device_id}/#")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:8]}")
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()

    def send(self, channel: Channel, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic(self.device_id, channel), payload, qos=1, retain=retain).wait_for_publish(5)

    def command(self, action: str, issued_at: datetime | None = None, **args) -> str:
        command = messages.Command(command_id=uuid.uuid4(), action=action, args=args,
                                   issued_at=issued_at or datetime.now(UTC))
        self.send(Channel.COMMANDS, messages.encode(command))
        return str(command.command_id)

    def received(self, channel: Channel) -> list:
        wanted = topic(self.device_id, channel)
        return [messages.decode(p) for t, p, _ in list(self.sub.messages) if t == wanted]

    def wait_for(self, channel: Channel, predicate, timeout: float = 60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [m for m in self.received(channel) if predicate(m)]
            if found:
                return found
            time.sleep(0.1)
        pytest.fail(f"nothing on {channel} matched within {timeout:.0f}s; got {self.received(channel)}")

    def result(self, command_id: str, timeout: float = 60.0) -> messages.CommandResult:
        (result,) = self.wait_for(Channel.COMMAND_RESULT, lambda r: str(r.command_id) == command_id, timeout)
        return result

    def close(self) -> None:
        self.client.publish(topic(self.device_id, Channel.DESIRED_CONFIG), b"", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        self.sub.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    paths = DevicePaths.at(tmp_path_factory.mktemp("agent-device")).create()
    settings = DeviceSettings(bus_port=free_port(), timezone="UTC")
    save_settings(paths.root, settings)
    device_id = f"svc-{uuid.uuid4().hex[:10]}"
    (paths.root / "cloud.json").write_text(json.dumps({"device_id": device_id,
                                                      "broker_url": "mqtt://127.0.0.1:1883"}))
    os.environ["VOXFLEET_HEARTBEAT_SECONDS"] = "600"  # heartbeats here come from report_now only
    supervisor = Supervisor(paths, settings, services=SMALL)
    try:
        supervisor.start(timeout=120)
    finally:
        del os.environ["VOXFLEET_HEARTBEAT_SECONDS"]
    cloud = Cloud(device_id)
    deadline = time.time() + 30
    while time.time() < deadline and not sync_state(paths).get("connected"):
        time.sleep(0.2)
    try:
        yield supervisor, cloud
    finally:
        cloud.close()
        supervisor.stop()


def sync_state(paths) -> dict:
    try:
        return json.loads((paths.run / "sync.json").read_text())
    except (OSError, ValueError):
        return {}


def test_report_now_sends_a_heartbeat_and_one_result(stack):
    supervisor, cloud = stack
    command_id = cloud.command("report_now")
    result = cloud.result(command_id)
    assert result.status == "ok" and "heartbeat sent" in result.detail
    (beat, *_) = cloud.wait_for(Channel.HEARTBEAT, lambda b: True)
    assert beat.services["agent"] == "ready" and beat.outbox_depth == 0


def test_a_command_delivered_twice_runs_once_and_gets_one_result(stack):
    supervisor, cloud = stack
    command = messages.Command(command_id=uuid.uuid4(), action="report_now", issued_at=datetime.now(UTC))
    before = len(cloud.received(Channel.HEARTBEAT))
    cloud.send(Channel.COMMANDS, messages.encode(command))
    cloud.send(Channel.COMMANDS, messages.encode(command))
    cloud.result(str(command.command_id))
    later = cloud.command("report_now")  # a later command's result proves the duplicate was handled
    cloud.result(later)
    results = [r for r in cloud.received(Channel.COMMAND_RESULT) if r.command_id == command.command_id]
    assert len(results) == 1
    assert len(cloud.received(Channel.HEARTBEAT)) - before == 2  # one per distinct command


def test_expired_and_invalid_commands_are_rejected_with_reasons(stack):
    supervisor, cloud = stack
    stale = cloud.command("report_now", issued_at=datetime.now(UTC) - timedelta(hours=2))
    assert cloud.result(stale).status == "rejected" and "expired" in cloud.result(stale).detail
    empty = cloud.command("speak", text="   ")
    assert cloud.result(empty).status == "rejected" and "non-empty 'text'" in cloud.result(empty).detail
    unknown_id = str(uuid.uuid4())
    cloud.send(Channel.COMMANDS, json.dumps({
        "v": 1, "kind": "command", "command_id": unknown_id, "action": "format_disk",
        "issued_at": "2026-11-26T10:00:00Z"}).encode())
    result = cloud.result(unknown_id)
    assert result.status == "rejected" and "action" in result.detail


def test_malformed_oversized_and_wrong_version_messages_are_survived(stack):
    supervisor, cloud = stack
    paths = supervisor.paths
    before = sync_state(paths).get("rejected_down", 0)
    cloud.send(Channel.COMMANDS, b"\xff\xfe not json")
    cloud.send(Channel.COMMANDS, json.dumps({"v": 1, "kind": "command", "pad": "x" * 300_000}).encode())
    cloud.send(Channel.COMMANDS, json.dumps({"v": 2, "kind": "command"}).encode())
    cloud.send(Channel.DESIRED_CONFIG, json.dumps({"v": 1, "kind": "heartbeat"}).encode())
    deadline = time.time() + 20
    while time.time() < deadline and sync_state(paths).get("rejected_down", 0) < before + 4:
        time.sleep(0.2)
    assert sync_state(paths)["rejected_down"] == before + 4
    log = (paths.logs / "agent.log").read_text()
    assert "not JSON" in log and "exceeds the 262144-byte limit" in log and "unsupported version 2" in log
    # Still alive and answering.
    assert cloud.result(cloud.command("report_now")).status == "ok"
    assert supervisor.health()["agent"]["restarts"] == 0


def test_bus_tap_streams_filtered_messages_until_stopped(stack):
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message

    supervisor, cloud = stack
    tap = cloud.command("tap_start", types=["voxfleet.test."], rate=50, duration_s=60)
    assert cloud.result(tap).status == "ok"
    bus = MessageBusClient(host="127.0.0.1", port=supervisor.settings.bus_port)
    bus.run_in_thread()
    assert bus.connected_event.wait(10)
    try:
        for i in range(5):
            bus.emit(Message("voxfleet.test.ping", {"i": i}))
            bus.emit(Message("voxfleet.other", {"i": i}))
        frames = cloud.wait_for(Channel.TAP,
                                lambda f: any(m["type"] == "voxfleet.test.ping" for m in f.messages))
        deadline = time.time() + 10
        while time.time() < deadline:
            seen = [m for f in cloud.received(Channel.TAP) for m in f.messages]
            if len(seen) >= 5:
                break
            time.sleep(0.1)
        assert [m["data"]["i"] for m in seen] == [0, 1, 2, 3, 4]
        assert all(m["type"] == "voxfleet.test.ping" for m in seen) and frames
        stop = cloud.command("tap_stop")
        assert cloud.result(stop).detail == "tap off: 5 messages forwarded"
        bus.emit(Message("voxfleet.test.ping", {"i": 99}))
        time.sleep(2)
        assert all(m["data"]["i"] != 99 for f in cloud.received(Channel.TAP) for m in f.messages)
    finally:
        bus.close()


def test_desired_config_applied_rejected_and_rolled_back(stack):
    supervisor, cloud = stack
    paths = supervisor.paths
    agent_pid = supervisor.services["agent"].process.pid

    def acked(version):
        return cloud.wait_for(Channel.CONFIG_ACK, lambda a: a.version == version)[-1]

    def publish(version, **config):
        cloud.send(Channel.DESIRED_CONFIG, messages.encode(messages.DesiredConfig(
            version=version, config=messages.VoiceConfig(**config))), retain=True)

    publish(1, wake_word="hey_jarvis", wake_threshold=0.5)  # what the device runs already
    assert acked(1).status == "applied"
    assert json.loads((paths.root / "managed.json").read_text())["version"] == 1

    publish(2, wake_word="hey_siri")
    ack = acked(2)
    assert ack.status == "rejected" and "unknown wake word 'hey_siri'" in ack.reason

    # Changing the language needs core, audio and the listener restarted; this stack has none of
    # them, so the supervisor refuses, and the agent puts v1 back.
    publish(3, lang="de-DE")
    ack = acked(3)
    assert ack.status == "rejected" and "not a restartable service" in ack.reason
    assert "keeping v1" in ack.reason
    assert json.loads((paths.root / "managed.json").read_text())["version"] == 1
    assert supervisor.services["agent"].process.pid == agent_pid  # the agent was never restarted


def test_restart_request_restarts_only_the_named_service(stack):
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message

    supervisor, cloud = stack
    pids = {name: svc.process.pid for name, svc in supervisor.services.items()}
    bus = MessageBusClient(host="127.0.0.1", port=supervisor.settings.bus_port)
    bus.run_in_thread()
    assert bus.connected_event.wait(10)
    try:
        reply = bus.wait_for_response(Message("voxfleet.services.restart", {"services": ["volume"]}),
                                      timeout=60)
        assert reply is not None and reply.data == {"ok": True, "restarted": ["volume"]}
        after = {name: svc.process.pid for name, svc in supervisor.services.items()}
        assert after["volume"] != pids["volume"]
        assert after["messagebus"] == pids["messagebus"] and after["agent"] == pids["agent"]
        assert supervisor.services["volume"].state == "ready"
        reply = bus.wait_for_response(Message("voxfleet.services.restart", {"services": ["messagebus"]}),
                                      timeout=10)
        assert reply.data["ok"] is False and "not a restartable service" in reply.data["error"]
    finally:
        bus.close()


def test_end_session_cancels_the_open_exchange(stack):
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message

    supervisor, cloud = stack
    bus = MessageBusClient(host="127.0.0.1", port=supervisor.settings.bus_port)
    bus.run_in_thread()
    assert bus.connected_event.wait(10)
    try:
        context = {"session": {"session_id": "default"}}
        bus.emit(Message("recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}, context))
        bus.emit(Message("recognizer_loop:record_begin", {}, context))
        time.sleep(1.0)  # the agent hears them
        result = cloud.result(cloud.command("end_session"))
    finally:
        bus.close()
    assert result.status == "ok" and result.detail.startswith("ended session ")
    session_id = result.detail.removeprefix("ended session ")
    cloud.result(cloud.command("report_now"))  # flushes the outbox now
    ended = cloud.wait_for(Channel.EVENTS, lambda b: any(
        e.type == "session.ended" and e.session_id == session_id for e in b.events))
    (event,) = [e for b in ended for e in b.events
                if e.type == "session.ended" and e.session_id == session_id]
    assert event.end_state == "cancelled"
