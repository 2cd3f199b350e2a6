"""Hard limits wired in, on SQLite and PostgreSQL: at a meter's hard limit the API refuses ``speak``
commands and pairing with 402 ``plan_limit_reached`` naming the meter and the limit, the portal says so
beside the pairing form and in a red banner, and ingest keeps storing and metering everything."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from flask import render_template

from cloud import pairing
from cloud.billing import Period, enforce
from cloud.billing.meter import meter
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import Command, Device, PairingCode, UsageRecord, VoiceSession, utcnow
from cloud.ingest import store
from cloud.ingest.validate import Inbound, check
from cloud.scoping import PlatformScope, TenantScope
from protocol.topics import Channel, topic
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.cloud.ingest_rig import FleetDevice, batch, session_events
from tests.cloud.web.tenant.test_fixtures import Portal, portal_fixture, post, text  # noqa: F401


def _moment():
    """A time in the current period, a little in the past (so a device clock would be plausible)."""
    now = utcnow()
    return max(Period.of(now).start, now - timedelta(minutes=1))


def _plan(sessions, tenant_id: uuid.UUID, meters: dict) -> None:
    with sessions() as db:
        plan = create_plan(db, {"name": "Capped", "code": f"capped-{uuid.uuid4().hex[:6]}", "currency": "EUR",
                                "monthly_price": 1000, "meters": meters})
        subscribe(db, tenant_id, plan.id, at=Period.of(utcnow()).start)
        db.commit()


def accepted(device_key: str, events: list[dict]):
    """A batch as the ingest worker accepts it off the wire."""
    return check(Inbound(topic(device_key, Channel.EVENTS), batch(events), 1, 1, utcnow()))


def _error(response) -> dict:
    return response.get_json()["error"]


def test_speak_is_refused_at_a_usage_hard_limit_while_other_commands_and_ingest_go_on(api: Api) -> None:
    t = api.tenant()
    device = api.device(t)
    _plan(api.sessions, t.id, {"tts_characters": {"included": 50, "overage_price": "0.1", "hard_limit": 100}})
    speak = {"action": "speak", "args": {"text": "Fire drill at noon"}}
    api.usage(t, device, _moment(), tts_characters=60)
    allowed = api.post(f"/devices/{device.id}/commands", t.write_key, json=speak)
    assert allowed.status_code == 202, allowed.get_json()

    api.usage(t, device, _moment(), tts_characters=40)          # 100 of 100: at the hard limit
    refused = api.post(f"/devices/{device.id}/commands", t.write_key, json=speak)
    assert refused.status_code == 402
    error = _error(refused)
    assert error["code"] == "plan_limit_reached"
    assert error["details"] == {"meter": "tts_characters", "hard_limit": 100, "used": "100"}
    assert "TTS characters" in error["message"] and "hard limit" in error["message"]
    assert [c.action for c in api.rows(Command)] == ["speak"]   # the refused one was not stored
    # Commands that start no new cloud work still go out.
    reload = api.post(f"/devices/{device.id}/commands", t.write_key, json={"action": "reload"})
    assert reload.status_code == 202

    # Ingest stores and meters what the device sends above the limit: billing data is never dropped.
    fake = FleetDevice(device.device_key, device.id, t.id, t.project_id, "u", "p", "mqtt://unused")
    with api.sessions() as db:
        report = store.write_cycle(db, [accepted(device.device_key, session_events(fake, start=_moment()))],
                                   utcnow())
        db.commit()
    assert report is not None
    assert len(api.rows(VoiceSession)) == 1 and len(api.rows(UsageRecord)) == 3
    with api.sessions() as db:
        assert meter(db, t.id, Period.of(utcnow())).tts_characters == 120
    # Another tenant, and this tenant next period, are not limited.
    with api.sessions() as db:
        enforce.check_speak(db, t.id, now=Period.of(utcnow()).next().start)
    other = api.tenant()
    other_device = api.device(other)
    assert api.post(f"/devices/{other_device.id}/commands", other.write_key, json=speak).status_code == 202


def test_pairing_is_refused_at_the_active_devices_hard_limit_and_the_code_stays_usable(api: Api) -> None:
    t = api.tenant()
    kept = api.device(t)
    _plan(api.sessions, t.id, {"active_devices": {"included": 1, "hard_limit": 1}})
    secret = secrets.token_urlsafe(32)
    issued = api.post("/pairing/codes", json={"secret": secret}).get_json()
    claim = {"code": issued["code"], "project_id": str(t.project_id), "name": "Hall"}
    refused = api.post("/pairing/claim", t.write_key, json=claim)
    assert refused.status_code == 402
    assert _error(refused)["code"] == "plan_limit_reached"
    assert _error(refused)["details"] == {"meter": "active_devices", "hard_limit": 1, "used": "1"}
    assert "active devices" in _error(refused)["message"]
    assert len(api.rows(Device)) == 1
    [code] = api.rows(PairingCode, PairingCode.code == issued["code"])
    assert code.claimed_at is None
    # Unpairing the old device makes room; the same code then pairs.
    assert api.delete(f"/devices/{kept.id}", t.write_key).status_code == 200
    paired = api.post("/pairing/claim", t.write_key, json=claim)
    assert paired.status_code == 201, paired.get_json()
    assert paired.get_json()["name"] == "Hall"


def test_devices_active_this_period_count_too_and_no_subscription_means_no_limit(api: Api) -> None:
    t = api.tenant()
    with api.sessions() as db:
        assert enforce.blocked_meters(db, t.id) == []
        enforce.check_new_device(db, t.id)       # no subscription: nothing to enforce
    gone = api.device(t)
    api.usage(t, gone, _moment(), intents_handled=1)
    assert api.delete(f"/devices/{gone.id}", t.write_key).status_code == 200
    _plan(api.sessions, t.id, {"active_devices": {"hard_limit": 1}})
    # No device is paired any more, but one was active this period: the limit is reached.
    with api.sessions() as db:
        [blocked] = enforce.blocked_meters(db, t.id)
        assert (blocked.meter, blocked.used, blocked.hard_limit) == ("active_devices", "1", 1)


def test_the_portal_explains_a_refused_pairing_and_shows_the_red_banner(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        scope.add(Device(project_id=org.project_id, name="Lobby", device_key=f"dk-{uuid.uuid4().hex[:12]}"))
        issued = pairing.request_code(db, secrets.token_urlsafe(32))
        db.commit()
    no_intents = {"included": 0, "overage_price": "1", "hard_limit": 0}
    _plan(portal.sessions, org.id, {"active_devices": {"hard_limit": 1}, "intents_handled": no_intents})
    page = post(owner, "/tenant/devices/pair", {"code": issued.code, "project_id": str(org.project_id),
                                                "name": "Kitchen"})
    assert page.status_code == 402
    assert "hard limit for active devices (active_devices) is 1" in text(page)
    assert [d.name for d in portal.rows(Device)] == ["Lobby"]

    with portal.app.test_request_context(), portal.sessions() as db:
        blocked = enforce.blocked_meters(db, org.id)
        banner = render_template("billing/_limit_banner.html", limit_blocked=blocked)
        quiet = render_template("billing/_limit_banner.html", limit_blocked=[])
    shown = " ".join(banner.split())
    assert 'role="alert"' in banner and "flash error" in banner
    assert "Plan limit reached." in shown
    assert "active devices: 1 used, hard limit 1." in shown
    assert "intents handled: 0 used, hard limit 0." in shown
    assert "New devices cannot be paired." in shown and "speak commands" in shown
    assert quiet.strip() == ""
    with portal.sessions() as db:
        assert PlatformScope(db).first(PairingCode, PairingCode.code == issued.code).claimed_at is None
