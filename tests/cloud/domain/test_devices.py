"""cloud.domain.devices called directly, on SQLite and PostgreSQL: rename and move (audited under the
caller), a move into another tenant's project refused with nothing changed, and unpairing through a
real broker: the device is disconnected and cannot log in again; with the broker unreachable nothing
changes."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from cloud.broker.mosquitto import free_port
from cloud.db import AuditEntry, Device, DeviceCredential
from cloud.domain import devices
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from tests.cloud.broker.test_contract import WAIT, Probe
from tests.cloud.domain.test_fixtures import (  # noqa: F401
    ACTOR,
    Rig,
    broker_rig_fixture,
    rig_fixture,
)


def test_rename_and_move_a_device(rig: Rig) -> None:
    org = rig.tenant()
    lab = rig.project(org, "Lab")
    device = rig.device(org, "Lobby")
    with rig.caller(org) as caller:
        devices.update_device(caller, get_owned(caller.scope, Device, device.id), name="Front desk",
                              project_id=lab)
    [row] = rig.rows(Device, Device.id == device.id)
    assert (row.name, row.project_id) == ("Front desk", lab)
    changes = {(e.action, e.actor) for e in rig.rows(AuditEntry, AuditEntry.target == f"device:{device.id}")}
    assert changes == {("device.rename", ACTOR), ("device.move", ACTOR)}


def test_a_move_into_another_tenants_project_is_refused_and_nothing_changes(rig: Rig) -> None:
    org, other = rig.tenant(), rig.tenant()
    device = rig.device(org, "Lobby")
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        with pytest.raises(DomainError) as refused:
            devices.update_device(caller, row, name="Renamed", project_id=other.project_id)
        assert (refused.value.status, refused.value.code) == (422, "unknown_project")
    [row] = rig.rows(Device, Device.id == device.id)
    assert (row.name, row.project_id) == ("Lobby", org.project_id)
    assert rig.rows(AuditEntry, AuditEntry.target == f"device:{device.id}") == []


def test_unpair_revokes_the_broker_login_and_disconnects_the_device(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    probe = device.connect(rig.port)
    with rig.caller(org) as caller:
        done = devices.unpair(caller, get_owned(caller.scope, Device, device.id), config=rig.config,
                              broker=rig.broker)
        assert done.status == "unpaired"
    assert probe.disconnected.wait(WAIT), "the unpaired device is still connected"
    again = Probe(rig.port, device.username, device.password, f"voxfleet-{device.key}")
    code = again.connect()
    assert code is None or code.is_failure
    [row] = rig.rows(Device, Device.id == device.id)
    assert (row.status, row.presence) == ("unpaired", "offline") and row.unpaired_at is not None
    [credential] = rig.rows(DeviceCredential, DeviceCredential.device_id == device.id)
    assert credential.revoked_at is not None
    [entry] = rig.rows(AuditEntry, AuditEntry.action == "device.unpair")
    assert entry.actor == ACTOR and entry.details["credentials_revoked"] == 1
    with rig.caller(org) as caller:  # unpairing again changes nothing and needs no broker
        devices.unpair(caller, get_owned(caller.scope, Device, device.id), config=rig.config, broker=None)
    assert len(rig.rows(AuditEntry, AuditEntry.action == "device.unpair")) == 1


def test_unpair_with_the_broker_unreachable_changes_nothing(rig: Rig) -> None:
    org = rig.tenant()
    device = rig.device(org)
    # A Mosquitto the cloud cannot reach: nothing listens on that port.
    unreachable = rig.config.model_copy(update={"broker_url": f"mqtt://127.0.0.1:{free_port()}",
                                                "broker_admin_password": SecretStr("admin-secret")})
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as refused:
            devices.unpair(caller, get_owned(caller.scope, Device, device.id), config=unreachable)
        assert (refused.value.status, refused.value.code) == (503, "broker_unavailable")
        assert "admin-secret" not in refused.value.message
    [row] = rig.rows(Device, Device.id == device.id)
    assert row.status == "paired"
    [credential] = rig.rows(DeviceCredential, DeviceCredential.device_id == device.id)
    assert credential.revoked_at is None
    assert rig.rows(AuditEntry, AuditEntry.action == "device.unpair") == []
