"""The agent writes for the cloud it talks to, and reads a newer cloud's messages.

A 0.1.0 cloud refuses a whole message over one field it does not know, so until the device knows
better (the cloud's health names its release) it sends only what 0.1.0 read, and the previous
release's own reader, run from git history, accepts all of it. A cloud that says it reads tolerantly
gets the device's capabilities. Fields of the cloud's messages the device does not know are ignored,
counted and, in a desired config, named back in the acknowledgement.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from cloud.config import load_config
from device.sync import cloud_peer
from device.sync.agent import Agent
from protocol import messages
from protocol.topics import Channel, topic
from protocol.versions import LEGACY, READS, release
from tests.conftest import free_port
from tests.device.sync.test_agent import exchange
from tests.device.sync.test_sync import Subscriber
from tests.protocol import previous
from tests.waiting import wait_until

BROKER = "mqtt://127.0.0.1:1883"


@pytest.fixture(scope="module")
def cloud_url(tmp_path_factory) -> Iterator[str]:
    """A real cloud of this release (its HTTP side is what the device asks)."""
    from cloud.serve import start

    config = load_config(tmp_path_factory.mktemp("cloud"), http_port=free_port(), mqtt_port=free_port())
    running = start(config)
    try:
        yield running.url
    finally:
        running.stop()


class Running:
    def __init__(self, tmp_path, cloud: str) -> None:
        self.device_id = f"rel-{uuid.uuid4().hex[:10]}"
        (tmp_path / "cloud.json").write_text(json.dumps({"device_id": self.device_id, "broker_url": BROKER,
                                                         "cloud": cloud}))
        self.sub = Subscriber(f"voxfleet/v1/devices/{self.device_id}/#")
        self.agent = Agent(tmp_path, heartbeat_every=0.5)
        self.threads = [threading.Thread(target=loop, daemon=True)
                        for loop in (self.agent.sync_loop, self.agent.work_loop)]
        for thread in self.threads:
            thread.start()

    def payloads(self, channel: Channel) -> list[bytes]:
        wanted = topic(self.device_id, channel)
        return [p for t, p, _ in list(self.sub.messages) if t == wanted and p]

    def wait(self, check, what: str, timeout: float = 30.0):
        return wait_until(check, timeout, what, every=0.1)

    def send(self, channel: Channel, payload: bytes) -> None:
        self.agent.on_down(channel, payload)

    def close(self) -> None:
        self.agent.stop.set()
        for thread in self.threads:
            thread.join(15)
        self.sub.close()
        self.agent.store.close()


def _sync_state(data_dir) -> dict:
    try:
        return json.loads((data_dir / "run" / "sync.json").read_text())
    except (OSError, ValueError):
        return {}


def test_the_health_of_this_cloud_names_its_release_and_versions(cloud_url):
    body = requests.get(f"{cloud_url}/api/v1/health", timeout=10).json()
    peer = cloud_peer.parse_health(body)
    assert peer is not None and peer.release == release() and peer.reads == READS and not peer.strict


@pytest.mark.parametrize(("body", "expected"), [
    ({"status": "ok", "database": "ok"}, LEGACY),                       # what a 0.1.0 cloud answers
    ({"status": "ok", "database": "ok", "protocol": "v1"}, LEGACY),     # unreadable: assume the strict one
    ({"status": "ok", "release": "0.3.0", "protocol": {"reads": []}}, LEGACY),
    ({"error": {"code": "database_unavailable"}}, None),                # cannot tell now: keep what was known
    ("<html>", None),
])
def test_health_bodies(body, expected):
    assert cloud_peer.parse_health(body) == expected


def test_a_cloud_it_cannot_ask_gets_only_what_010_reads(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    device = Running(tmp_path, closed)
    try:
        for raw in exchange():
            device.agent.on_message(raw)
        device.wait(lambda: device.payloads(Channel.EVENTS) and len(device.payloads(Channel.HEARTBEAT)) >= 2,
                    "events and heartbeats")
        device.send(Channel.COMMANDS, messages.encode(messages.Command(
            command_id=uuid.uuid4(), action="end_session", issued_at=datetime.now(UTC))))
        device.wait(lambda: device.payloads(Channel.COMMAND_RESULT), "the command's result")
        sent = [p for channel in Channel if channel.upstream for p in device.payloads(channel)]
    finally:
        device.close()
    assert device.agent.cloud == LEGACY
    presence = [json.loads(p) for p in device.payloads(Channel.PRESENCE)]
    assert presence and all("capabilities" not in p for p in presence)
    assert all("unknown_fields_total" not in json.loads(p) for p in device.payloads(Channel.HEARTBEAT))
    answers = previous.decode(sent)
    refused = [a["error"] for a in answers if not a["ok"]]
    assert refused == [], f"the previous release's reader refuses what the device sent: {refused}"
    assert len(answers) >= 5


def test_a_cloud_that_says_it_reads_tolerantly_gets_the_capabilities(tmp_path, cloud_url):
    device = Running(tmp_path, cloud_url)
    try:
        announced = device.wait(lambda: [json.loads(p) for p in device.payloads(Channel.PRESENCE)
                                         if "capabilities" in json.loads(p)], "a presence with capabilities")
        state = device.wait(lambda: _sync_state(tmp_path).get("cloud_release") and _sync_state(tmp_path),
                            "run/sync.json to name the cloud's release")
    finally:
        device.close()
    caps = messages.Capabilities.model_validate(announced[-1]["capabilities"])
    assert caps.release == release() and caps.protocol == sorted(READS)
    assert {"wake_word", "tts_voice", "enabled_skills"} <= set(caps.config_fields)
    assert {"speak", "report_now", "tap_start"} <= set(caps.commands)
    assert "tiny.en" in caps.stt_models and "hey_jarvis" in caps.wake_words
    assert "en_US-joe-medium" in caps.voices and caps.engines["tts"] == ["piper"]
    assert "voxfleet-skill-timer.voxfleet" in {s.id for s in caps.skills}
    assert state["cloud_release"] == release()


def test_a_newer_clouds_fields_are_ignored_counted_and_named_back(tmp_path, cloud_url):
    device = Running(tmp_path, cloud_url)
    try:
        device.wait(lambda: device.agent.cloud != LEGACY, "the device to learn the cloud's release")
        desired = json.loads(messages.encode(messages.DesiredConfig(
            version=1, config=messages.VoiceConfig(wake_word="hey_jarvis"))))
        desired["config"]["kokoro_voice"] = "jf_alpha"   # a field of a later release
        desired["rollout"] = {"wave": 2}
        device.send(Channel.DESIRED_CONFIG, json.dumps(desired).encode())
        command = json.loads(messages.encode(messages.Command(
            command_id=uuid.uuid4(), action="end_session", issued_at=datetime.now(UTC))))
        command["priority"] = "high"
        device.send(Channel.COMMANDS, json.dumps(command).encode())
        (ack,) = device.wait(lambda: [messages.decode(p) for p in device.payloads(Channel.CONFIG_ACK)],
                             "the acknowledgement")
        (result,) = device.wait(lambda: [messages.decode(p) for p in device.payloads(Channel.COMMAND_RESULT)],
                                "the command's result")
        beat = device.wait(lambda: [b for b in map(messages.decode, device.payloads(Channel.HEARTBEAT))
                                    if b.unknown_fields_total], "a heartbeat counting them")[-1]
    finally:
        device.close()
    assert ack.status == "applied" and ack.ignored == ["kokoro_voice"]
    assert json.loads((tmp_path / "managed.json").read_text())["config"] == {"wake_word": "hey_jarvis"}
    assert result.status == "ok"
    assert beat.unknown_fields_total == 3  # config.kokoro_voice, rollout, priority
    assert _sync_state(tmp_path)["unknown_fields"] == 3
