"""One refusal of the domain, two answers: an API client gets the JSON error (cloud/errors.py), a
person in the portal gets a page (cloud/web/refusals.py): the same status, and the same words, from
the one DomainError the domain raised. On SQLite and PostgreSQL, through Flask's test client."""

from __future__ import annotations

import html
import secrets
import uuid

from cloud import admin, pairing
from cloud.billing import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import Device, PairingCode, utcnow
from cloud.domain.errors import DomainError
from cloud.scoping import PlatformScope, TenantScope
from cloud.web.refusals import sentence
from tests.cloud.web.tenant.test_fixtures import Org, Portal, portal_fixture, post, text  # noqa: F401


def _write_key(portal: Portal, org: Org) -> str:
    with portal.sessions() as db:
        _, key = admin.create_api_key(db, org.slug, "write", name="client")
    return key


def _at_device_limit(portal: Portal, org: Org) -> None:
    with portal.sessions() as db:
        TenantScope(db, org.id).add(Device(project_id=org.project_id, name="Lobby",
                                           device_key=f"dk-{uuid.uuid4().hex[:12]}"))
        plan = create_plan(db, {"name": "One", "code": f"one-{uuid.uuid4().hex[:6]}", "currency": "EUR",
                                "monthly_price": 1000, "meters": {"active_devices": {"hard_limit": 1}}})
        subscribe(db, org.id, plan.id, at=Period.of(utcnow()).start)
        db.commit()


def test_a_plan_refusal_reaches_a_client_as_json_and_a_person_beside_the_field(portal: Portal) -> None:
    org = portal.tenant()
    key = _write_key(portal, org)
    _at_device_limit(portal, org)
    with portal.sessions() as db:
        issued = pairing.request_code(db, secrets.token_urlsafe(32))
    claim = {"code": issued.code, "project_id": str(org.project_id), "name": "Kitchen"}

    api = portal.app.test_client().post("/api/v1/pairing/claim", json=claim,
                                        headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 402 and api.mimetype == "application/json"
    error = api.get_json()["error"]
    assert error["code"] == "plan_limit_reached"
    assert error["details"] == {"meter": "active_devices", "hard_limit": 1, "used": "1"}

    page = post(portal.client(org.owner_id), "/tenant/devices/pair", claim)
    assert page.status_code == 402 and page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    said = sentence(DomainError(api.status_code, error["code"], error["message"]))
    beside_the_code = body.split('id="code-error"', 1)[1].split("</p>", 1)[0]
    assert said in html.unescape(beside_the_code) and 'value="Kitchen"' in body
    # Refused twice, and nothing of either attempt kept: the device count and the code are as they were.
    assert [d.name for d in portal.rows(Device)] == ["Lobby"]
    with portal.sessions() as db:
        assert PlatformScope(db).first(PairingCode, PairingCode.code == issued.code).claimed_at is None


def test_another_tenants_device_is_not_found_for_a_client_and_for_a_person(portal: Portal) -> None:
    org, other = portal.tenant(), portal.tenant()
    key = _write_key(portal, org)
    with portal.sessions() as db:
        theirs = TenantScope(db, other.id).add(Device(project_id=other.project_id, name="Theirs",
                                                      device_key=f"dk-{uuid.uuid4().hex[:12]}"))
        db.commit()
    api = portal.app.test_client().patch(f"/api/v1/devices/{theirs.id}", json={"name": "mine"},
                                         headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 404 and api.get_json()["error"] == {"code": "device_not_found",
                                                                  "message": "no such device"}
    owner = portal.client(org.owner_id)
    page = post(owner, f"/tenant/devices/{theirs.id}", {"name": "mine", "project_id": str(org.project_id)})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Not found" in text(page) and "No such device." in text(page) and "Theirs" not in text(page)
    assert [d.name for d in portal.rows(Device)] == ["Theirs"]


def test_a_refusal_reads_as_a_sentence() -> None:
    assert sentence(DomainError(422, "unknown_project", "project_id: no such project")) == "No such project."
    assert sentence(DomainError(400, "invalid_request", "args.text: String should have at least 1 character")
                    ) == "String should have at least 1 character."
    kept = "the plan's hard limit for active devices (active_devices) is 1 this period: it lifts"
    assert sentence(DomainError(402, "plan_limit_reached", kept)) == kept[:1].upper() + kept[1:] + "."
