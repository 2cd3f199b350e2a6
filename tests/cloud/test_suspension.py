"""Suspending a tenant: its devices drop off the broker, its keys and people are refused, it is audited;
reactivating lets the same devices back in without re-pairing. SQLite and PostgreSQL, embedded broker."""

from __future__ import annotations

import secrets
import threading

import paho.mqtt.client as mqtt
import pytest

from cloud.broker.embedded import EmbeddedBroker
from cloud.db import AuditEntry, Device, DeviceCredential
from cloud.scoping import PlatformScope
from cloud.security import hash_password
from cloud.tenants import TenantStateError, reactivate_tenant, suspend_tenant
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.conftest import free_port


class DeviceClient:
    def __init__(self, port: int, device_key: str, password: str) -> None:
        self.connected, self.dropped = threading.Event(), threading.Event()
        self.refused: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"voxfleet-{device_key}")
        self.client.username_pw_set(device_key, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.dropped.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused.append(reason_code.value)
        else:
            self.connected.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def provisioned(api: Api, tenant, broker: EmbeddedBroker) -> tuple[str, str]:
    device = api.device(tenant, presence="online")
    password = secrets.token_urlsafe(18)
    broker.admin().add_device(device.device_key, device.device_key, password)
    with api.sessions() as db:
        scope = PlatformScope(db).for_tenant(tenant.id)
        scope.add(DeviceCredential(device_id=device.id, username=device.device_key,
                                   password_hash=hash_password(password)))
        db.commit()
    return device.device_key, password


@pytest.fixture
def broker(api):
    config = api.app.extensions["voxfleet.config"]
    running = EmbeddedBroker(config.data_dir, port=free_port()).start()
    yield running
    running.stop()


def test_suspension_disconnects_devices_refuses_keys_and_reactivation_restores(api, broker):
    tenant, bystander = api.tenant(), api.tenant()
    key, password = provisioned(api, tenant, broker)
    other_key, other_password = provisioned(api, bystander, broker)
    device = DeviceClient(broker.port, key, password)
    other = DeviceClient(broker.port, other_key, other_password)
    try:
        assert device.connected.wait(10) and other.connected.wait(10)
        with api.sessions() as db:
            assert suspend_tenant(db, tenant.id, broker.admin(), "operator:test", reason="unpaid") == 1
        assert device.dropped.wait(10), "the suspended tenant's device stayed connected"
        assert not other.dropped.is_set()  # nobody else is touched
        refused = api.get("/devices", tenant.read_key)
        assert refused.status_code == 403 and refused.json["error"]["code"] == "tenant_suspended"
        assert api.get("/devices", bystander.read_key).status_code == 200
        with api.sessions() as db:
            scope = PlatformScope(db).for_tenant(tenant.id)
            assert {d.presence for d in scope.all(Device)} == {"offline"}
            actions = [e.action for e in PlatformScope(db).all(AuditEntry, AuditEntry.tenant_id == tenant.id)]
            assert "tenant.suspended" in actions
            with pytest.raises(TenantStateError):
                suspend_tenant(db, tenant.id, broker.admin(), "operator:test")
            assert reactivate_tenant(db, tenant.id, broker.admin(), "operator:test") == 1
        again = DeviceClient(broker.port, key, password)  # same credentials, no re-pairing
        try:
            assert again.connected.wait(10), f"refused after reactivation: {again.refused}"
        finally:
            again.close()
        assert api.get("/devices", tenant.read_key).status_code == 200
    finally:
        device.close()
        other.close()
