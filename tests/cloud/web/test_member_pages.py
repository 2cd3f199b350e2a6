"""The member portal and who may use which portal page: members read (dashboard, sessions, keys without
secrets) and are refused every tenant page and every write (403); a form without its CSRF token is
refused (400) before anything changes. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app

from cloud.db import ApiKey, Device, Project, VoiceSession, utcnow
from cloud.scoping import TenantScope
from cloud.security import new_api_key
from tests.cloud.web.tenant.test_fixtures import Org, Portal, portal_fixture, post, text  # noqa: F401


def _data(portal: Portal, org: Org) -> dict[str, uuid.UUID | str]:
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        device = scope.add(
            Device(project_id=org.project_id, name="Lobby", device_key=f"dk-{uuid.uuid4().hex[:10]}")
        )
        scope.flush()
        session = scope.add(
            VoiceSession(
                device_id=device.id,
                project_id=org.project_id,
                session_key="s1",
                started_at=utcnow() - timedelta(minutes=5),
                transcript="what time is it",
                intent_skill="date-time",
                intent_name="what-time",
                end_state="open",
            )
        )
        made = new_api_key()
        key = scope.add(ApiKey(name="CRM", prefix=made.prefix, key_hash=made.key_hash, scope="read"))
        db.commit()
        return {
            "device": device.id,
            "session": session.id,
            "key": key.id,
            "prefix": made.prefix,
            "secret": made.key,
            "hash": made.key_hash,
        }


def test_member_reads_dashboard_sessions_and_keys_without_secrets(portal: Portal) -> None:
    org = portal.tenant("Acme")
    rows = _data(portal, org)
    member = portal.client(portal.person(org, "tenant_member"))
    home = member.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/member/")
    dashboard = member.get("/member/")
    assert dashboard.status_code == 200 and "what time is it" in text(dashboard) and "Acme" in text(dashboard)
    listed = member.get("/member/sessions?outcome=open")
    assert "what time is it" in text(listed)
    detail = member.get(f"/member/sessions/{rows['session']}")
    assert detail.status_code == 200 and "date-time:what-time" in text(detail)
    assert "End this session" not in text(
        detail
    ) and '<form method="post" action="/tenant' not in detail.get_data(as_text=True)
    keys = member.get("/member/keys")
    html = keys.get_data(as_text=True)
    assert rows["prefix"] in html and "CRM" in html
    assert rows["secret"] not in html and rows["hash"] not in html
    nav = dashboard.get_data(as_text=True).split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert "Personal settings" in nav and "Devices" not in nav
    # Owners and admins may look at the member portal too.
    assert portal.client(org.owner_id).get("/member/keys").status_code == 200


def test_member_is_refused_every_tenant_page_and_write(portal: Portal) -> None:
    org = portal.tenant()
    rows = _data(portal, org)
    member = portal.client(portal.person(org, "tenant_member"))
    tenant_rules = [r for r in current_app_rules(portal) if r.endpoint.startswith("tenant.")]
    assert len(tenant_rules) >= 30
    ids = {
        "device_id": rows["device"],
        "session_id": rows["session"],
        "key_id": rows["key"],
        "project_id": org.project_id,
        "user_id": org.owner_id,
        "webhook_id": uuid.uuid4(),
        "invoice_id": uuid.uuid4(),
    }
    for rule in tenant_rules:
        path = rule.rule
        for name, value in ids.items():
            path = path.replace(f"<uuid:{name}>", str(value))
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            answer = post(member, path) if method == "POST" else member.get(path)
            assert answer.status_code == 403, (method, path)
    # Nothing changed.
    assert [d.name for d in portal.rows(Device)] == ["Lobby"] and len(portal.rows(Project)) == 1
    assert portal.rows(ApiKey)[0].revoked_at is None
    # Anonymous people are sent to sign in.
    anonymous = portal.app.test_client().get("/tenant/devices")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert portal.app.test_client().get("/member/").status_code == 302


def test_forms_without_the_csrf_token_are_refused(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    for path, data in [
        ("/tenant/projects", {"name": "Sneaky"}),
        ("/tenant/keys", {"scope": "write"}),
        ("/tenant/settings/profile", {"name": "Hijacked"}),
    ]:
        forged = owner.post(path, data=data)
        assert forged.status_code == 400, path
        assert "did not come from this site" in text(forged)
        wrong = owner.post(path, data={**data, "csrf_token": "guessed"})
        assert wrong.status_code == 400
    assert [p.name for p in portal.rows(Project)] == ["Default"] and portal.rows(ApiKey) == []


def current_app_rules(portal: Portal):
    with portal.app.app_context():
        return list(current_app.url_map.iter_rules())
