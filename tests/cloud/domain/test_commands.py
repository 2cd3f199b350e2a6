"""cloud.domain.commands called directly, on SQLite and PostgreSQL: a command is stored, audited, sent
through a real broker and marked sent; refusals (unpaired device, bad arguments, an unknown action, a
``speak`` at the plan's hard limit) store nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from cloud.billing import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import AuditEntry, Command, Device, UsageRecord, utcnow
from cloud.domain import commands, devices
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from cloud.scoping import TenantScope
from protocol.topics import Channel, topic
from tests.cloud.broker.test_contract import WAIT
from tests.cloud.domain.test_fixtures import (  # noqa: F401
    ACTOR,
    Org,
    Rig,
    broker_rig_fixture,
    rig_fixture,
)


def test_a_command_reaches_the_device_and_is_marked_sent(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    probe = device.connect(rig.port)
    assert not probe.subscribe(topic(device.key, Channel.COMMANDS)).is_failure
    args = {"text": "The kettle is ready", "lang": "en-us"}
    with rig.caller(org) as caller:
        row = commands.issue_command(caller, get_owned(caller.scope, Device, device.id), "speak", args,
                                     downlink=rig.downlink)
        assert row.status == "sent" and row.sent_at is not None and row.created_by == ACTOR
        command_id = row.command_id
    message = json.loads(probe.messages.get(timeout=WAIT).payload)
    assert (message["command_id"], message["action"], message["args"]) == (str(command_id), "speak", args)
    probe.close()
    with rig.caller(org) as caller:
        found = commands.get_command(caller.scope, get_owned(caller.scope, Device, device.id), command_id)
        assert found.status == "sent"
        with pytest.raises(DomainError) as missing:
            commands.get_command(caller.scope, get_owned(caller.scope, Device, device.id), uuid.uuid4())
        assert (missing.value.status, missing.value.code) == (404, "command_not_found")
    [entry] = rig.rows(AuditEntry, AuditEntry.action == "device.command")
    assert entry.actor == ACTOR and entry.details == {"command": "speak", "command_id": str(command_id)}


@pytest.mark.parametrize(("action", "args", "field"), [
    ("self_destruct", {}, "action"),
    ("speak", {"text": ""}, "args.text"),
    ("speak", {"text": "hi", "volume": 11}, "args.volume"),
    ("tap_start", {"rate": 1000}, "args.rate"),
])
def test_bad_commands_are_refused_before_anything_is_stored(rig: Rig, action, args, field) -> None:
    org = rig.tenant()
    device = rig.device(org)
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as refused:
            commands.check_command(caller.scope, get_owned(caller.scope, Device, device.id), action, args)
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
        assert refused.value.message.startswith(f"{field}: ")
    assert rig.rows(Command) == []


def test_an_unpaired_device_takes_no_commands(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        devices.unpair(caller, row, config=rig.config, broker=rig.broker)
        with pytest.raises(DomainError) as refused:
            commands.issue_command(caller, row, "reload", {}, downlink=rig.downlink)
        assert (refused.value.status, refused.value.code) == (409, "device_unpaired")
    assert rig.rows(Command) == []


def _at_tts_hard_limit(rig: Rig, org: Org, device_id: uuid.UUID) -> None:
    with rig.database.sessions() as db:
        plan = create_plan(db, {"name": "Capped", "code": f"capped-{uuid.uuid4().hex[:6]}", "currency": "EUR",
                                "monthly_price": 1000,
                                "meters": {"tts_characters": {"included": 50, "overage_price": "0.1",
                                                              "hard_limit": 100}}})
        subscribe(db, org.id, plan.id, at=Period.of(utcnow()).start)
        moment = max(Period.of(utcnow()).start, utcnow() - timedelta(minutes=1))
        TenantScope(db, org.id).add(UsageRecord(device_id=device_id, project_id=org.project_id,
                                                event_id=uuid.uuid4(), ts=moment, tts_characters=100))
        db.commit()


def test_speak_is_refused_at_the_plans_hard_limit_and_other_commands_go_on(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    _at_tts_hard_limit(rig, org, device.id)
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Device, device.id)
        with pytest.raises(DomainError) as refused:
            commands.issue_command(caller, row, "speak", {"text": "Fire drill at noon"},
                                   downlink=rig.downlink)
        assert (refused.value.status, refused.value.code) == (402, "plan_limit_reached")
        assert refused.value.details == {"meter": "tts_characters", "hard_limit": 100, "used": "100"}
        assert "hard limit" in refused.value.message
        reload = commands.issue_command(caller, row, "reload", {}, downlink=rig.downlink)
        assert reload.status == "sent"
    assert [c.action for c in rig.rows(Command)] == ["reload"]
