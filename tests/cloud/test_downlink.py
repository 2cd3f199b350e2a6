"""Desired configs and commands reach the device through a real broker (the embedded one), as the
device itself sees them: connected with its own credentials, confined to its own topics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from cloud.broker.embedded import EmbeddedBroker
from cloud.broker.mosquitto import free_port
from cloud.broker.runtime import service_account
from cloud.db import AuditEntry, Command, Device, DeviceCredential
from cloud.downlink import for_app
from protocol.topics import Channel, topic
from tests.cloud.api.test_fixtures import Api, Tenant, ago, close_app, make_app
from tests.cloud.broker.test_contract import WAIT, Probe, secret


@dataclass
class Cloud:
    api: Api
    broker: EmbeddedBroker
    port: int
    data_dir: Path

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker = EmbeddedBroker(self.data_dir, port=self.port, reconcile_interval=0.2).start()
        self.api.app.extensions["voxfleet.broker"] = self.broker


@pytest.fixture
def cloud(database, tmp_path) -> Iterator[Cloud]:
    port = free_port()
    broker = EmbeddedBroker(tmp_path, port=port, reconcile_interval=0.2).start()
    app = make_app(database.url, tmp_path, mqtt_port=port)
    account = service_account(app.extensions["voxfleet.config"])
    broker.admin().ensure_service_account(account.username, account.password)
    app.extensions["voxfleet.broker"] = broker
    app.config["DOWNLINK_PUBACK_TIMEOUT"] = 5.0
    made = Cloud(Api(app), broker, port, tmp_path)
    yield made
    close_app(app)
    made.broker.stop()


@dataclass
class PairedDevice:
    id: uuid.UUID
    key: str
    username: str
    password: str
    probe: Probe | None = None

    def connect(self, port: int) -> Probe:
        self.probe = Probe(port, self.username, self.password, f"voxfleet-{self.key}")
        code = self.probe.connect()
        assert code is not None and not code.is_failure, code
        return self.probe


def pair(cloud: Cloud, tenant: Tenant) -> PairedDevice:
    key = f"dev-{uuid.uuid4().hex[:12]}"
    username, password = f"u-{key}", secret()
    cloud.broker.admin().add_device(key, username, password)
    row = cloud.api.device(tenant, device_key=key, username=username)
    return PairedDevice(row.id, key, username, password)


def test_desired_config_arrives_retained_on_the_device_topic(cloud: Cloud) -> None:
    t = cloud.api.tenant()
    device = pair(cloud, t)
    first = cloud.api.put(f"/devices/{device.id}/config", t.write_key, json={"wake_word": "hey_jarvis"})
    assert first.status_code == 200 and first.get_json() == {
        "version": 1, "config": {"wake_word": "hey_jarvis"}, "published": True}
    second = cloud.api.put(f"/devices/{device.id}/config", t.write_key,
                           json={"wake_word": "hey_mycroft", "wake_threshold": 0.6})
    assert second.get_json()["version"] == 2 and second.get_json()["published"] is True
    # The device connects afterwards: the broker hands it the latest, retained.
    probe = device.connect(cloud.port)
    assert not probe.subscribe(topic(device.key, Channel.DESIRED_CONFIG)).is_failure
    message = probe.messages.get(timeout=WAIT)
    assert message.retain
    body = json.loads(message.payload)
    assert body["kind"] == "desired_config" and body["version"] == 2
    assert body["config"] == {"wake_word": "hey_mycroft", "wake_threshold": 0.6}
    state = cloud.api.get(f"/devices/{device.id}/config", t.read_key).get_json()
    assert state["desired"]["version"] == 2 and state["ack"] is None
    probe.close()


def test_a_command_is_sent_to_the_device_and_marked_sent(cloud: Cloud) -> None:
    t = cloud.api.tenant()
    device = pair(cloud, t)
    probe = device.connect(cloud.port)
    assert not probe.subscribe(topic(device.key, Channel.COMMANDS)).is_failure
    args = {"text": "The kettle is ready", "lang": "en-us"}
    response = cloud.api.post(f"/devices/{device.id}/commands", t.write_key,
                              json={"action": "speak", "args": args})
    assert response.status_code == 202
    command = response.get_json()
    assert command["status"] == "sent" and command["sent_at"] is not None
    message = json.loads(probe.messages.get(timeout=WAIT).payload)
    assert message["kind"] == "command" and message["command_id"] == command["command_id"]
    assert message["action"] == "speak" and message["args"] == args
    fetched = cloud.api.get(f"/devices/{device.id}/commands/{command['command_id']}", t.read_key).get_json()
    assert fetched["status"] == "sent"
    probe.close()


def test_a_command_stays_pending_without_puback_and_is_sent_by_the_retry(cloud: Cloud) -> None:
    t = cloud.api.tenant()
    device = pair(cloud, t)
    cloud.api.app.config["DOWNLINK_PUBACK_TIMEOUT"] = 0.5
    downlink = for_app(cloud.api.app)
    assert downlink.wait_connected(WAIT)
    cloud.broker.stop()
    response = cloud.api.post(f"/devices/{device.id}/commands", t.write_key, json={"action": "report_now"})
    assert response.status_code == 202
    command = response.get_json()
    assert command["status"] == "pending" and command["sent_at"] is None
    [row] = cloud.api.rows(Command, Command.command_id == uuid.UUID(command["command_id"]))
    assert row.status == "pending"

    cloud.restart_broker()
    account = service_account(cloud.api.app.extensions["voxfleet.config"])
    cloud.broker.admin().ensure_service_account(account.username, account.password)
    probe = device.connect(cloud.port)
    assert not probe.subscribe(topic(device.key, Channel.COMMANDS)).is_failure
    assert downlink.wait_connected(WAIT * 3)
    downlink.timeout = WAIT
    assert downlink.retry_pending(cloud.api.sessions, grace=timedelta(0)) == 1
    received = json.loads(probe.messages.get(timeout=WAIT).payload)
    assert received["command_id"] == command["command_id"] and received["action"] == "report_now"
    [row] = cloud.api.rows(Command, Command.command_id == uuid.UUID(command["command_id"]))
    assert row.status == "sent" and row.sent_at is not None
    probe.close()


def test_ending_an_open_session_sends_end_session(cloud: Cloud) -> None:
    t = cloud.api.tenant()
    device = pair(cloud, t)
    probe = device.connect(cloud.port)
    assert not probe.subscribe(topic(device.key, Channel.COMMANDS)).is_failure
    [row] = cloud.api.rows(Device, Device.id == device.id)
    session = cloud.api.session(t, row, ago(seconds=5))
    response = cloud.api.post(f"/sessions/{session.id}/end", t.write_key)
    assert response.status_code == 202 and response.get_json()["action"] == "end_session"
    assert json.loads(probe.messages.get(timeout=WAIT).payload)["action"] == "end_session"
    probe.close()


def test_unpair_revokes_credentials_and_disconnects_the_device(cloud: Cloud) -> None:
    t = cloud.api.tenant()
    device = pair(cloud, t)
    probe = device.connect(cloud.port)
    response = cloud.api.delete(f"/devices/{device.id}", t.write_key)
    assert response.status_code == 200 and response.get_json()["status"] == "unpaired"
    assert probe.disconnected.wait(WAIT), "the unpaired device is still connected"
    [credential] = cloud.api.rows(DeviceCredential, DeviceCredential.device_id == device.id)
    assert credential.revoked_at is not None
    again = Probe(cloud.port, device.username, device.password, f"voxfleet-{device.key}")
    code = again.connect()
    assert code is None or code.is_failure
    actions = [e.action for e in cloud.api.rows(AuditEntry)]
    assert "device.unpair" in actions
