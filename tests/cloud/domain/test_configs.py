"""cloud.domain.configs called directly, on SQLite and PostgreSQL: a desired config is versioned,
audited and reaches the device retained through a real broker; every refusal (bad field, unknown
field, unpaired device, two changes at the same moment) leaves nothing stored."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from cloud.db import AuditEntry, DesiredConfig, Device
from cloud.domain import configs, devices
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from cloud.scoping import TenantScope
from protocol.topics import Channel, topic
from tests.cloud.broker.test_contract import WAIT
from tests.cloud.domain.test_fixtures import (  # noqa: F401
    ACTOR,
    Rig,
    broker_rig_fixture,
    rig_fixture,
)


def test_a_config_is_versioned_audited_and_reaches_the_device_retained(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        first = configs.set_desired_config(caller, row, {"wake_word": "hey_jarvis"}, downlink=rig.downlink)
        second = configs.set_desired_config(caller, row, {"wake_word": "hey_mycroft", "wake_threshold": 0.6},
                                            downlink=rig.downlink)
    assert (first.version, first.config, first.published) == (1, {"wake_word": "hey_jarvis"}, True)
    assert (second.version, second.published) == (2, True)
    # The device connects afterwards: the broker hands it the latest version, retained.
    probe = device.connect(rig.port)
    assert not probe.subscribe(topic(device.key, Channel.DESIRED_CONFIG)).is_failure
    message = probe.messages.get(timeout=WAIT)
    body = json.loads(message.payload)
    assert message.retain and body["version"] == 2
    assert body["config"] == {"wake_word": "hey_mycroft", "wake_threshold": 0.6}
    probe.close()
    with rig.caller(org) as caller:
        state = configs.config_state(caller.scope, get_owned(caller.scope, Device, device.id))
    assert state.desired is not None and state.desired.version == 2 and state.desired.created_by == ACTOR
    assert state.ack is None
    audited = [e.details["version"] for e in rig.rows(AuditEntry, AuditEntry.action == "device.config")]
    assert sorted(audited) == [1, 2]


@pytest.mark.parametrize(("config", "field", "words"), [
    ({"wake_threshold": 2}, "wake_threshold", "less than 1"),
    ({"volume": 3}, "volume", "unknown field"),
    ({"silence_end": "long"}, "silence_end", "valid number"),
])
def test_a_bad_config_is_refused_naming_the_field(rig: Rig, config, field, words) -> None:
    org = rig.tenant()
    device = rig.device(org)
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        with pytest.raises(DomainError) as refused:
            configs.check_config(caller.scope, row, config)
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
        assert refused.value.message.startswith(f"{field}: ") and words in refused.value.message
        assert refused.value.details[0]["field"] == field
    assert rig.rows(DesiredConfig) == []


def test_an_unpaired_device_gets_no_config(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        devices.unpair(caller, row, config=rig.config, broker=rig.broker)
        with pytest.raises(DomainError) as refused:
            configs.set_desired_config(caller, row, {"lang": "en-us"}, downlink=rig.downlink)
        assert (refused.value.status, refused.value.code) == (409, "device_unpaired")
    assert rig.rows(DesiredConfig) == []


def test_the_second_of_two_changes_at_the_same_moment_is_refused(broker_rig: Rig) -> None:
    """Another request stores version 1 between this one reading the latest version and writing its
    own: the version's unique key refuses this one, and nothing of it is kept."""
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)

    def other_request_first(*_args) -> None:
        with rig.database.sessions() as other:
            TenantScope(other, org.id).add(DesiredConfig(device_id=device.id, version=1,
                                                         config={"lang": "de-de"}, created_by="user:other"))
            other.commit()

    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        event.listen(caller.scope.db, "before_flush", other_request_first, once=True)
        with pytest.raises(DomainError) as refused:
            configs.set_desired_config(caller, row, {"lang": "en-us"}, downlink=rig.downlink)
        assert (refused.value.status, refused.value.code) == (409, "version_conflict")
    [kept] = rig.rows(DesiredConfig)
    assert (kept.version, kept.config, kept.created_by) == (1, {"lang": "de-de"}, "user:other")
    assert rig.rows(AuditEntry, AuditEntry.action == "device.config") == []
    with rig.caller(org) as caller:  # retried, it becomes the next version
        done = configs.set_desired_config(caller, get_owned(caller.scope, Device, device.id),
                                          {"lang": "en-us"}, downlink=rig.downlink)
    assert done.version == 2 and done.published
