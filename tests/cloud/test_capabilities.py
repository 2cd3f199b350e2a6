"""What a device announced it can do: stored by ingest from its online presence, shown by the API, and
the limit of what the cloud offers and sends it. A device that announced nothing is a 0.1.0 device."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from cloud import capabilities
from cloud.db import Device, utcnow
from cloud.ingest import store
from cloud.ingest.validate import Inbound, check
from cloud.scoping import TenantScope
from protocol import messages
from protocol.topics import Channel, topic
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.cloud.web.tenant.test_fixtures import portal_fixture, text  # noqa: F401
from tests.protocol.golden import make

ANNOUNCED = make.fixtures()["presence_online"].capabilities


def _ingest(api: Api, device: Device, message: messages.Presence) -> None:
    accepted = check(Inbound(topic(device.device_key, Channel.PRESENCE), messages.encode(message), 1, 1,
                             utcnow()))
    with api.sessions() as db:
        report = store.write_cycle(db, [accepted], utcnow())
        db.commit()
    assert report.rejected == {}


def _stored(api: Api, device: Device) -> Device:
    (row,) = api.rows(Device, Device.id == device.id)
    return row


def _announce(api: Api, device: Device, caps: messages.Capabilities | None, *, state: str = "online",
              minutes: int = 0) -> None:
    _ingest(api, device, messages.Presence(state=state, ts=utcnow() + timedelta(minutes=minutes),
                                           capabilities=caps))


def test_ingest_keeps_what_each_online_presence_says(api):
    tenant = api.tenant()
    device = api.device(tenant)
    assert capabilities.of(_stored(api, device)) == capabilities.LEGACY_ABILITIES
    _announce(api, device, ANNOUNCED, minutes=1)
    row = _stored(api, device)
    assert row.capabilities["release"] == "0.2.0" and row.capabilities_at is not None
    assert capabilities.of(row).announced and capabilities.of(row).peer.release == "0.2.0"
    _announce(api, device, None, state="offline", minutes=2)       # the Last Will says nothing of it
    assert _stored(api, device).capabilities["release"] == "0.2.0"
    _announce(api, device, None, minutes=3)                        # rolled back to 0.1.0: says nothing
    row = _stored(api, device)
    assert row.capabilities is None and capabilities.of(row).peer.strict


def test_the_api_shows_what_the_device_supports(api):
    tenant = api.tenant()
    old, new = api.device(tenant), api.device(tenant)
    _announce(api, new, ANNOUNCED, minutes=1)
    legacy = api.get(f"/devices/{old.id}", tenant.read_key).get_json()["capabilities"]
    assert legacy == {"announced": False, "release": "0.1.0",
                      "config_fields": sorted(capabilities.LEGACY_CONFIG_FIELDS),
                      "commands": sorted(capabilities.LEGACY_COMMANDS)}
    said = api.get(f"/devices/{new.id}", tenant.read_key).get_json()["capabilities"]
    assert said["announced"] is True and said["release"] == "0.2.0"
    assert said["details"]["wake_words"] == ANNOUNCED.wake_words
    assert said["details"]["skills"][0] == {"id": "ovos-skill-date-time.openvoiceos", "version": "1.1.5"}


def test_a_config_is_refused_for_what_the_device_cannot_do(api):
    tenant = api.tenant()
    device = api.device(tenant)
    limited = ANNOUNCED.model_copy(update={"config_fields": ["wake_word", "wake_threshold"]})
    _announce(api, device, limited, minutes=1)
    path = f"/devices/{device.id}/config"

    refused = api.put(path, tenant.write_key, json={"tts_voice": "en_US-joe-medium"})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "unsupported_by_device"
    assert error["details"] == [{"field": "tts_voice",
                                 "message": "release 0.2.0 of this device does not support tts_voice"}]

    refused = api.put(path, tenant.write_key, json={"wake_word": "computer"})
    assert refused.status_code == 422
    assert "not on this device: computer (it has alexa, hey_jarvis, hey_mycroft, hey_rhasspy)" in \
        refused.get_json()["error"]["message"]

    accepted = api.put(path, tenant.write_key, json={"wake_word": "hey_mycroft", "wake_threshold": 0.6})
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["version"] == 1  # refusals stored nothing


def test_a_device_that_announced_nothing_gets_what_010_took(api):
    tenant = api.tenant()
    device = api.device(tenant)
    path = f"/devices/{device.id}/config"
    # 0.1.0 said nothing of its wake words: the device itself judges the value (and acks or refuses it).
    assert api.put(path, tenant.write_key, json={"wake_word": "computer"}).status_code == 200
    misspelt = api.put(path, tenant.write_key, json={"wake_wrd": "alexa"})
    assert misspelt.status_code == 400
    assert "wake_wrd: unknown field" in misspelt.get_json()["error"]["message"]


def test_a_command_the_device_does_not_run_is_refused(api):
    tenant = api.tenant()
    device = api.device(tenant)
    _announce(api, device, ANNOUNCED.model_copy(update={"commands": ["speak", "report_now"]}), minutes=1)
    refused = api.post(f"/devices/{device.id}/commands", tenant.write_key, json={"action": "tap_start"})
    assert refused.status_code == 422
    assert refused.get_json()["error"] == {
        "code": "unsupported_by_device",
        "message": "release 0.2.0 of this device does not run the tap_start command"}
    assert api.post(f"/devices/{device.id}/commands", tenant.write_key,
                    json={"action": "report_now"}).status_code == 202


def test_stored_capabilities_that_no_longer_parse_fall_back_to_010():
    assert capabilities.parse({"release": "9"}) == capabilities.LEGACY_ABILITIES  # protocol missing
    assert capabilities.parse(json.loads(ANNOUNCED.model_dump_json())).announced


def test_the_device_page_says_what_it_supports(portal):
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        old = scope.add(Device(project_id=org.project_id, name="Room 101",
                               device_key=f"old-{uuid.uuid4().hex[:8]}"))
        new = scope.add(Device(project_id=org.project_id, name="Room 102",
                               device_key=f"new-{uuid.uuid4().hex[:8]}",
                               capabilities=json.loads(ANNOUNCED.model_dump_json()),
                               capabilities_at=utcnow()))
        db.commit()
    said = text(owner.get(f"/tenant/devices/{new.id}"))
    assert "What it supports" in said and "Release 0.2.0" in said
    assert "Wake words hey_jarvis, hey_mycroft, alexa, hey_rhasspy" in said
    assert "Skills ovos-skill-date-time.openvoiceos 1.1.5" in said
    assert "voxfleet-skill-timer.voxfleet 0.1.0" in said
    assert "Commands end session, reload, report now, speak, tap start, tap stop" in said
    quiet = text(owner.get(f"/tenant/devices/{old.id}"))
    assert "has not said what it supports: it runs release 0.1.0 or older" in quiet
    assert "the commands end session, reload, report now, speak, tap start, tap stop" in quiet
