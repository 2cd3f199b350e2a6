"""cloud.domain.pairing called directly, on SQLite and PostgreSQL: a tenant claims the code a device
shows (audited, the person kept), the device collects credentials that work on a real broker once;
refusals (a wrong, expired or used code, another tenant's project, the plan's device limit, too many
wrong codes, an unreachable broker) leave the code as it was."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from pydantic import SecretStr

from cloud import pairing
from cloud.billing import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.broker.mosquitto import free_port
from cloud.db import AuditEntry, Device, PairingCode, utcnow
from cloud.domain import pairing as domain_pairing
from cloud.domain.errors import DomainError
from cloud.scoping import PlatformScope
from tests.cloud.broker.test_contract import Probe
from tests.cloud.domain.test_fixtures import (  # noqa: F401
    ACTOR,
    Rig,
    broker_rig_fixture,
    rig_fixture,
)


def _code(rig: Rig) -> tuple[pairing.IssuedCode, str]:
    secret = secrets.token_urlsafe(32)
    with rig.database.sessions() as db:
        return pairing.request_code(db, secret), secret


def _code_row(rig: Rig, code: str) -> PairingCode:
    [row] = rig.rows(PairingCode, PairingCode.code == code)
    return row


def test_claim_then_collect_once_and_the_credentials_work_on_the_broker(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    issued, secret = _code(rig)
    with rig.database.sessions() as db:
        assert domain_pairing.collect(db, issued.code, secret, config=rig.config, broker=rig.broker) is None
    with rig.caller(org) as caller:
        device = domain_pairing.claim(caller, issued.code.lower(), org.project_id, "Lobby")
        assert (device.name, device.device_key, device.status) == ("Lobby", issued.device_key, "paired")
    [entry] = rig.rows(AuditEntry, AuditEntry.action == "device.paired")
    assert entry.actor == ACTOR and entry.target == f"device:{device.id}"
    with rig.database.sessions() as db:
        credentials = domain_pairing.collect(db, issued.code, secret, config=rig.config, broker=rig.broker)
    assert credentials is not None and credentials.device_key == issued.device_key
    probe = Probe(rig.port, credentials.username, credentials.password, f"voxfleet-{issued.device_key}")
    code = probe.connect()
    assert code is not None and not code.is_failure
    probe.close()
    with rig.database.sessions() as db, pytest.raises(DomainError) as again:
        domain_pairing.collect(db, issued.code, secret, config=rig.config, broker=rig.broker)
    assert (again.value.status, again.value.code) == (410, "already_delivered")


def test_wrong_expired_and_used_codes_and_foreign_projects_are_refused(rig: Rig) -> None:
    org, other = rig.tenant(), rig.tenant()
    issued, _ = _code(rig)
    expired, _ = _code(rig)
    with rig.database.sessions() as db:
        PlatformScope(db).first(PairingCode, PairingCode.code == expired.code).expires_at = (
            utcnow() - timedelta(seconds=1))
        db.commit()
    with rig.caller(org) as caller:
        for code, project, expected in [("ZZZZZZ", org.project_id, (404, "unknown_code")),
                                        (expired.code, org.project_id, (410, "code_expired")),
                                        (issued.code, other.project_id, (404, "unknown_project"))]:
            with pytest.raises(DomainError) as refused:
                domain_pairing.claim(caller, code, project)
            assert (refused.value.status, refused.value.code) == expected, code
        assert _code_row(rig, issued.code).claimed_at is None
        domain_pairing.claim(caller, issued.code, org.project_id)
    with rig.caller(other) as caller, pytest.raises(DomainError) as used:
        domain_pairing.claim(caller, issued.code, other.project_id)
    assert (used.value.status, used.value.code) == (409, "already_claimed")
    assert [d.tenant_id for d in rig.rows(Device)] == [org.id]


def test_too_many_wrong_codes_are_refused_with_a_time_to_wait(rig: Rig) -> None:
    org = rig.tenant()
    issued, _ = _code(rig)
    with rig.caller(org) as caller:
        codes = []
        for _ in range(domain_pairing.CLAIM_FAILURES.burst + 1):
            with pytest.raises(DomainError) as refused:
                domain_pairing.claim(caller, "ZZZZZZ", org.project_id)
            codes.append(refused.value.code)
        assert codes[:-1] == ["unknown_code"] * domain_pairing.CLAIM_FAILURES.burst
        assert codes[-1] == "too_many_failed_claims" and refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
        # Only wrong codes are limited: the person who finds the right one still pairs the device.
        device = domain_pairing.claim(caller, issued.code, org.project_id)
    assert _code_row(rig, issued.code).device_id == device.id


def test_the_plans_device_limit_refuses_a_claim_and_the_code_stays_usable(rig: Rig) -> None:
    org = rig.tenant()
    rig.device(org, "Kept")
    with rig.database.sessions() as db:
        plan = create_plan(db, {"name": "One", "code": "one-device", "currency": "EUR", "monthly_price": 1000,
                                "meters": {"active_devices": {"included": 1, "hard_limit": 1}}})
        subscribe(db, org.id, plan.id, at=Period.of(utcnow()).start)
        db.commit()
    issued, _ = _code(rig)
    with rig.caller(org) as caller, pytest.raises(DomainError) as refused:
        domain_pairing.claim(caller, issued.code, org.project_id, "Hall")
    assert (refused.value.status, refused.value.code) == (402, "plan_limit_reached")
    assert refused.value.details == {"meter": "active_devices", "hard_limit": 1, "used": "1"}
    assert [d.name for d in rig.rows(Device)] == ["Kept"]
    assert _code_row(rig, issued.code).claimed_at is None


def test_collect_with_the_broker_unreachable_keeps_the_credentials_for_the_next_poll(rig: Rig) -> None:
    org = rig.tenant()
    issued, secret = _code(rig)
    with rig.caller(org) as caller:
        domain_pairing.claim(caller, issued.code, org.project_id)
    unreachable = rig.config.model_copy(update={"broker_url": f"mqtt://127.0.0.1:{free_port()}",
                                                "broker_admin_password": SecretStr("admin-secret")})
    with rig.database.sessions() as db, pytest.raises(DomainError) as refused:
        domain_pairing.collect(db, issued.code, secret, config=unreachable)
    assert (refused.value.status, refused.value.code) == (503, "broker_unavailable")
    assert "admin-secret" not in refused.value.message
    assert _code_row(rig, issued.code).credentials_delivered is False
