"""Which stage of the device's pipeline matched a session, and how sure it was: kept on the session
(devices from 0.2.0 send it; 0.1.0's sessions have none), shown by the API and the session page."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cloud.db import Device, VoiceSession, utcnow
from cloud.ingest import store
from cloud.ingest.validate import Inbound, check
from cloud.scoping import TenantScope
from protocol import messages
from protocol.topics import Channel, topic
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.cloud.web.tenant.test_fixtures import portal_fixture, text  # noqa: F401
from tests.protocol.golden import make

GOLDEN_010 = Path(__file__).resolve().parents[2] / "protocol" / "golden" / "0.1.0" / "event_batch.json"


def _ingest(api: Api, device: Device, payload: bytes) -> VoiceSession:
    accepted = check(Inbound(topic(device.device_key, Channel.EVENTS), payload, 1, 1, utcnow()))
    with api.sessions() as db:
        assert store.write_cycle(db, [accepted], utcnow()).rejected == {}
        db.commit()
    (row,) = api.rows(VoiceSession, VoiceSession.device_id == device.id)
    return row


def test_the_matching_stage_is_kept_and_shown(api):
    tenant = api.tenant()
    device = api.device(tenant)
    row = _ingest(api, device, messages.encode(make.fixtures()["event_batch"]))
    assert (row.intent_name, row.intent_stage, row.intent_confidence) == \
        ("what.time.is.it.intent", "semantic", 0.87)
    shown = api.get(f"/sessions/{row.id}", tenant.read_key).get_json()
    assert (shown["intent_stage"], shown["intent_confidence"]) == ("semantic", 0.87)


def test_a_010_session_has_no_stage(api):
    tenant = api.tenant()
    device = api.device(tenant)
    row = _ingest(api, device, GOLDEN_010.read_bytes())
    assert row.intent_name == "what.time.is.it.intent" and row.intent_stage is None
    assert row.intent_confidence is None
    assert json.loads(GOLDEN_010.read_bytes())["events"][3].keys().isdisjoint({"stage", "confidence"})


def test_the_session_page_says_what_matched(portal):
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        device = scope.add(Device(project_id=org.project_id, name="Lobby",
                                  device_key=f"d-{uuid.uuid4().hex[:8]}"))
        scope.flush()
        session = scope.add(VoiceSession(device_id=device.id, project_id=org.project_id, session_key="s1",
                                         started_at=utcnow(), transcript="could you tell me the time",
                                         intent_skill="ovos-skill-date-time.openvoiceos",
                                         intent_name="what.time.is.it.intent", intent_stage="semantic",
                                         intent_confidence=0.871))
        db.commit()
    page = text(owner.get(f"/tenant/sessions/{session.id}"))
    assert "Matched by semantic, confidence 0.87" in page
