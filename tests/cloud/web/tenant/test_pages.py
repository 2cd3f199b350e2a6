"""The tenant portal through Flask's test client, on SQLite and PostgreSQL: each page's happy path and
what a person gets wrong (a mistyped or expired pairing code, a duplicate project name, deleting a
project that still has devices, demoting the last owner), with the answer shown beside the field."""

from __future__ import annotations

import csv
import io
import secrets
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

from cloud import pairing
from cloud.db import (
    ApiKey,
    AuditEntry,
    Command,
    Device,
    DeviceCredential,
    Heartbeat,
    PairingCode,
    Project,
    SessionEvent,
    Tenant,
    UsageRecord,
    User,
    VoiceSession,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from cloud.scoping import PlatformScope, TenantScope
from tests.cloud.web.tenant.test_fixtures import Org, Portal, portal_fixture, post, text  # noqa: F401


def _device(
    portal: Portal,
    org: Org,
    name: str = "Lobby",
    project_id: uuid.UUID | None = None,
    username: str | None = None,
    **values,
) -> uuid.UUID:
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        device = scope.add(
            Device(
                project_id=project_id or org.project_id,
                name=name,
                device_key=f"dk-{uuid.uuid4().hex[:12]}",
                **values,
            )
        )
        scope.flush()
        if username:
            scope.add(DeviceCredential(device_id=device.id, username=username, password_hash="argon2"))
        db.commit()
        return device.id


def _session(portal: Portal, org: Org, device_id: uuid.UUID, minutes_ago: float, **values) -> uuid.UUID:
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        row = scope.add(
            VoiceSession(
                device_id=device_id,
                project_id=org.project_id,
                session_key=f"s-{uuid.uuid4().hex[:8]}",
                started_at=utcnow() - timedelta(minutes=minutes_ago),
                **values,
            )
        )
        db.commit()
        return row.id


def test_every_page_has_an_empty_state_that_says_what_to_do(portal: Portal) -> None:
    org = portal.tenant("Empty Org")
    owner = portal.client(org.owner_id)
    expected = {
        "/tenant/": "No voice sessions yet. Pair a device",
        "/tenant/devices": "No devices yet. Start pairing on the device",
        "/tenant/sessions": "No voice sessions yet. Pair a device and speak to it",
        "/tenant/projects": "Default",
        f"/tenant/projects/{org.project_id}": "No devices in this project",
        "/tenant/keys": "No API keys yet. Create one below",
        "/tenant/usage": "No usage in this period",
        "/tenant/team": "You are the only person here",
        "/tenant/settings": "No webhooks yet. Add one below",
    }
    for path, words in expected.items():
        page = owner.get(path)
        assert page.status_code == 200, path
        assert words in text(page), path
        assert "Empty Org" in text(page)


def test_pair_a_device_by_the_code_it_shows(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    with portal.sessions() as db:
        issued = pairing.request_code(db, secrets.token_urlsafe(32))
    # A mistyped code: refused beside the field, what was typed kept, nothing paired.
    wrong = post(
        owner,
        "/tenant/devices/pair",
        {"code": "ZZZZZZ", "project_id": str(org.project_id), "name": "Kitchen"},
    )
    assert wrong.status_code == 400
    assert 'id="code-error"' in wrong.get_data(as_text=True)
    assert "No device shows this code" in text(wrong) and 'value="Kitchen"' in wrong.get_data(as_text=True)
    assert portal.rows(Device) == []
    # The right code, typed the way people type it.
    code = f"{issued.code[:3].lower()}-{issued.code[3:].lower()}"
    done = post(
        owner, "/tenant/devices/pair", {"code": code, "project_id": str(org.project_id), "name": "Kitchen"}
    )
    assert done.status_code == 302
    [device] = portal.rows(Device)
    assert device.name == "Kitchen" and device.tenant_id == org.id and device.device_key == issued.device_key
    [claimed] = portal.rows(PairingCode, PairingCode.code == issued.code)
    assert claimed.claimed_by_user_id == org.owner_id
    page = owner.get(done.headers["Location"])
    assert "Paired “Kitchen”" in text(page) and issued.device_key in text(page)
    # Claimed once: the same code again is explained.
    again = post(owner, "/tenant/devices/pair", {"code": issued.code, "project_id": str(org.project_id)})
    assert again.status_code == 409 and "already used" in text(again)


def test_an_expired_code_is_explained(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    with portal.sessions() as db:
        issued = pairing.request_code(db, secrets.token_urlsafe(32))
        row = PlatformScope(db).first(PairingCode, PairingCode.code == issued.code)
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    expired = post(owner, "/tenant/devices/pair", {"code": issued.code, "project_id": str(org.project_id)})
    assert expired.status_code == 410
    assert "This code has expired" in text(expired)
    empty = post(owner, "/tenant/devices/pair", {"code": "", "project_id": "not-a-project"})
    assert empty.status_code == 400
    assert "Type the code the device shows." in text(empty) and "Choose a project." in text(empty)


def test_rename_move_and_unpair_a_device(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    device_id = _device(
        portal,
        org,
        "Lobby",
        username=f"dk-user-{uuid.uuid4().hex[:6]}",
        presence="online",
        last_heartbeat_at=utcnow(),
        last_heartbeat={"services": {"listener": "ready", "skills": "failed"}, "cpu_percent": 12.5},
    )
    with portal.sessions() as db:
        TenantScope(db, org.id).add(
            Heartbeat(device_id=device_id, metrics={"cpu_percent": 33.3, "services": {"listener": "ready"}})
        )
        db.commit()
    other = post(owner, "/tenant/projects", {"name": "Hotel B"})
    other_id = other.headers["Location"].rsplit("/", 1)[1]
    page = owner.get(f"/tenant/devices/{device_id}")
    assert page.status_code == 200
    assert "listener: ready" in text(page) and "skills: failed" in text(page) and "33.3" in text(page)
    blank = post(owner, f"/tenant/devices/{device_id}", {"name": "", "project_id": str(org.project_id)})
    assert blank.status_code == 400 and "Give the device a name." in text(blank)
    saved = post(owner, f"/tenant/devices/{device_id}", {"name": "Front desk", "project_id": other_id})
    assert saved.status_code == 302
    [device] = portal.rows(Device)
    assert device.name == "Front desk" and str(device.project_id) == other_id
    listed = owner.get(f"/tenant/projects/{other_id}")
    assert "Front desk" in text(listed)
    gone = post(owner, f"/tenant/devices/{device_id}/unpair")
    assert gone.status_code == 302
    [device] = portal.rows(Device)
    assert device.status == "unpaired" and device.presence == "offline"
    assert all(c.revoked_at is not None for c in portal.rows(DeviceCredential))
    assert "is unpaired: its broker login is revoked" in text(owner.get(gone.headers["Location"]))
    assert "Front desk" not in text(owner.get("/tenant/devices"))
    assert "Front desk" in text(owner.get("/tenant/devices?show=all"))


def test_sessions_filter_page_and_show_a_timeline(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    lobby = _device(portal, org, "Lobby")
    bar = _device(portal, org, "Bar")
    for i in range(30):
        _session(
            portal,
            org,
            lobby,
            100 - i,
            transcript=f"what time is it {i}",
            intent_skill="date-time",
            intent_name="what-time",
            end_state="answered",
            answer="It is noon",
        )
    failed = _session(portal, org, bar, 1, transcript="blorp the flanges", end_state="not_understood")
    first = owner.get("/tenant/sessions")
    assert first.status_code == 200 and "Older sessions" in text(first)
    assert "blorp the flanges" in text(first)
    html = first.get_data(as_text=True)
    cursor = html.split("cursor=", 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = owner.get(f"/tenant/sessions?cursor={cursor}")
    assert "what time is it 0" in text(second) and "blorp" not in text(second)
    only_failed = owner.get("/tenant/sessions?outcome=not_understood")
    assert "blorp" in text(only_failed) and "what time is it" not in text(only_failed)
    by_device = owner.get(f"/tenant/sessions?device={lobby}&intent=date-time:what-time")
    assert "blorp" not in text(by_device) and "what time is it 29" in text(by_device)
    nothing = owner.get("/tenant/sessions?from=2001-01-01T00:00&to=2001-01-02T00:00")
    assert "No session matches these filters" in text(nothing)
    bad = owner.get("/tenant/sessions?from=yesterday&outcome=bogus")
    assert bad.status_code == 400 and "Use a date and time" in text(bad) and "Choose an outcome" in text(bad)
    assert owner.get("/tenant/sessions?cursor=garbage").status_code == 200  # a stale link: first page

    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        start = utcnow() - timedelta(seconds=5)
        for seq, (kind, payload) in enumerate(
            [
                ("session.started", {}),
                ("wake_word", {"wake_word": "hey_jarvis"}),
                ("utterance", {"transcript": "blorp the flanges"}),
                ("intent.failed", {"utterance": "blorp the flanges"}),
                ("session.ended", {"end_state": "not_understood"}),
            ]
        ):
            scope.add(
                SessionEvent(
                    device_id=bar,
                    session_id=failed,
                    event_id=uuid.uuid4(),
                    seq=seq,
                    type=kind,
                    ts=start + timedelta(milliseconds=400 * seq),
                    payload=payload,
                )
            )
        scope.update(
            VoiceSession, [VoiceSession.id == failed], {"timings": {"stt_ms": 310.0, "total_ms": 2100.0}}
        )
        db.commit()
    timeline = owner.get(f"/tenant/sessions/{failed}")
    words = text(timeline)
    assert "Wake word heard" in words and "hey_jarvis" in words and "Not understood" in words
    assert "+1.60 s" in words and "2.10 s" in words and "310 ms" in words
    assert "End this session" not in words  # it has ended


def test_end_an_active_session(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    device = _device(portal, org)
    active = _session(portal, org, device, 0.1, transcript="set a timer")
    page = owner.get(f"/tenant/sessions/{active}")
    assert "End this session" in text(page)
    ended = post(owner, f"/tenant/sessions/{active}/end")
    assert ended.status_code == 302
    [command] = portal.rows(Command)
    assert command.action == "end_session" and command.device_id == device
    assert command.created_by == f"user:{org.owner_id}"


def test_projects_create_rename_refuse_duplicates_and_non_empty_deletes(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    made = post(owner, "/tenant/projects", {"name": "Hotel B", "description": "second site"})
    assert made.status_code == 302
    project_id = made.headers["Location"].rsplit("/", 1)[1]
    duplicate = post(owner, "/tenant/projects", {"name": "Hotel B"})
    assert duplicate.status_code == 409
    assert 'id="name-error"' in duplicate.get_data(as_text=True) and "already exists" in text(duplicate)
    assert 'value="Hotel B"' in duplicate.get_data(as_text=True)
    empty = post(owner, "/tenant/projects", {"name": "  "})
    assert empty.status_code == 400 and "Give the project a name." in text(empty)
    renamed = post(owner, f"/tenant/projects/{project_id}", {"name": "Hotel C", "description": ""})
    assert renamed.status_code == 302
    clash = post(owner, f"/tenant/projects/{project_id}", {"name": "Default"})
    assert clash.status_code == 400 and "already exists" in text(clash)
    device = _device(portal, org, "Pool", project_id=uuid.UUID(project_id))
    page = owner.get(f"/tenant/projects/{project_id}")
    assert "can only be deleted when it has no devices" in text(page) and "Pool" in text(page)
    refused = post(owner, f"/tenant/projects/{project_id}/delete")
    assert refused.status_code == 409 and "Move each device to another project" in text(refused)
    assert any(str(p.id) == project_id for p in portal.rows(Project))
    post(owner, f"/tenant/devices/{device}", {"name": "Pool", "project_id": str(org.project_id)})
    deleted = post(owner, f"/tenant/projects/{project_id}/delete")
    assert deleted.status_code == 302
    assert [p.name for p in portal.rows(Project)] == ["Default"]
    default = post(owner, f"/tenant/projects/{org.project_id}/delete")
    assert default.status_code == 409 and "default project cannot be deleted" in text(default)


def test_api_keys_create_show_once_rotate_and_revoke(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    made = post(owner, "/tenant/keys", {"name": "CRM sync", "scope": "write"})
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    html = made.get_data(as_text=True)
    key = html.split('id="secret-value">', 1)[1].split("<", 1)[0].strip()
    assert key.startswith("vfk_") and "shown only this once" in text(made)
    assert key not in owner.get("/tenant/keys").get_data(as_text=True)  # never again
    api = portal.app.test_client()
    assert api.get("/api/v1/projects", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    [row] = portal.rows(ApiKey)
    bad = post(owner, "/tenant/keys", {"name": "x", "scope": "admin"})
    assert bad.status_code == 400 and "Choose read or write." in text(bad)
    rotated = post(owner, f"/tenant/keys/{row.id}/rotate", {"overlap_seconds": "3600"})
    assert rotated.status_code == 201
    new_key = rotated.get_data(as_text=True).split('id="secret-value">', 1)[1].split("<", 1)[0].strip()
    assert new_key != key
    old = next(r for r in portal.rows(ApiKey) if r.id == row.id)
    assert old.expires_at is not None and old.revoked_at is None
    assert "expiring" in text(owner.get("/tenant/keys"))
    revoked = post(owner, f"/tenant/keys/{row.id}/revoke")
    assert revoked.status_code == 302
    assert api.get("/api/v1/projects", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert api.get("/api/v1/projects", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    again = post(owner, f"/tenant/keys/{row.id}/rotate", {"overlap_seconds": "0"})
    assert again.status_code == 302 and "revoked or expired" in text(owner.get("/tenant/keys"))


def test_usage_charts_data_and_csv(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    device = _device(portal, org, "=HYPERLINK(evil)")
    _session(portal, org, device, 30, intent_skill="date-time", intent_name="what-time")
    with portal.sessions() as db:
        TenantScope(db, org.id).add(
            UsageRecord(
                device_id=device,
                project_id=org.project_id,
                event_id=uuid.uuid4(),
                ts=utcnow() - timedelta(minutes=30),
                stt_seconds=1.5,
                tts_characters=42,
                intents_handled=1,
                wake_words=1,
            )
        )
        db.commit()
    for period in ("24h", "7d", "30d"):
        page = owner.get(f"/tenant/usage?range={period}&group_by=device")
        assert page.status_code == 200, period
        words = text(page)
        assert "Sessions" in words and "42" in words and "1.5" in words and "date-time:what-time" in words
        assert 'id="usage-data"' in page.get_data(as_text=True)
    csv_response = owner.get("/tenant/usage.csv?range=7d&group_by=device")
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    assert "attachment" in csv_response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True))))
    assert len(rows) == 1
    assert rows[0]["device_name"] == "'=HYPERLINK(evil)" and rows[0]["tts_characters"] == "42"
    assert rows[0]["sessions"] == "1" and float(rows[0]["stt_seconds"]) == 1.5
    custom = owner.get("/tenant/usage?range=custom&from=2026-02-10&to=2026-02-01")
    assert custom.status_code == 400 and "must not be before the first" in text(custom)
    assert owner.get("/tenant/usage.csv?range=custom&from=nope").status_code == 400


def test_team_roles_and_the_last_owner(portal: Portal) -> None:
    org = portal.tenant()
    owner = portal.client(org.owner_id)
    admin_id = portal.person(org, "tenant_admin", "admin@example.com")
    member_id = portal.person(org, "tenant_member", "member@example.com")
    page = owner.get("/tenant/team")
    assert "admin@example.com" in text(page) and "member@example.com" in text(page)
    # The last owner can neither be demoted nor removed.
    demote = post(owner, f"/tenant/team/{org.owner_id}/role", {"role": "tenant_admin"})
    assert demote.status_code == 409 and "is the last owner" in text(demote)
    assert next(u for u in portal.rows(User) if u.id == org.owner_id).role == "tenant_owner"
    remove_self = post(owner, f"/tenant/team/{org.owner_id}/remove")
    assert remove_self.status_code == 403
    # Admins cannot make owners nor touch one.
    admin = portal.client(admin_id)
    raise_ = post(admin, f"/tenant/team/{member_id}/role", {"role": "tenant_owner"})
    assert raise_.status_code == 403 and "Only an owner can make someone an owner." in text(raise_)
    touch = post(admin, f"/tenant/team/{org.owner_id}/remove")
    assert touch.status_code == 403
    assert post(admin, f"/tenant/team/{member_id}/role", {"role": "tenant_admin"}).status_code == 302
    # An owner makes a second owner; then the first may step down.
    assert post(owner, f"/tenant/team/{admin_id}/role", {"role": "tenant_owner"}).status_code == 302
    assert post(owner, f"/tenant/team/{org.owner_id}/role", {"role": "tenant_admin"}).status_code == 302
    roles = {u.id: u.role for u in portal.rows(User)}
    assert roles[org.owner_id] == "tenant_admin" and roles[admin_id] == "tenant_owner"
    # A role change ends the demoted person's session (the fingerprint covers the role).
    assert owner.get("/tenant/team").status_code == 302
    new_owner = portal.client(admin_id)
    assert post(new_owner, f"/tenant/team/{member_id}/remove").status_code == 302
    assert member_id not in {u.id for u in portal.rows(User)}
    other = portal.tenant()
    assert post(new_owner, f"/tenant/team/{other.owner_id}/remove").status_code == 404
    # Every change is in the audit log, under the person who made it.
    changes = {(e.action, e.actor, e.target) for e in portal.rows(AuditEntry) if e.tenant_id == org.id}
    assert ("user.role_changed", f"user:{org.owner_id}", f"user:{admin_id}") in changes
    assert ("user.removed", f"user:{admin_id}", f"user:{member_id}") in changes


def test_invitations_make_an_account_and_a_link(portal: Portal) -> None:
    """Through identity's invite_user: no mail server here, so the link is shown to the inviter once."""
    from cloud import security

    org = portal.tenant()
    owner = portal.client(org.owner_id)
    taken = post(owner, "/tenant/team/invite", {"email": "NOT-AN-EMAIL", "role": "tenant_member"})
    assert taken.status_code == 400 and 'id="email-error"' in taken.get_data(as_text=True)
    assert 'value="NOT-AN-EMAIL"' in taken.get_data(as_text=True)
    done = post(
        owner, "/tenant/team/invite", {"email": "New@Example.com", "name": "Nia", "role": "tenant_admin"}
    )
    assert done.status_code == 201 and "Invited new@example.com as admin." in text(done)
    link = done.get_data(as_text=True).split('id="secret-value">', 1)[1].split("<", 1)[0].strip()
    [user] = portal.rows(User, User.email == "new@example.com")
    assert user.role == "tenant_admin" and user.tenant_id == org.id and user.password_hash is None
    user_id, _ = security.read_invite_token(portal.app.config["SECRET_KEY"], link.rsplit("/", 1)[1])
    assert user_id == str(user.id)
    assert "invited" in text(owner.get("/tenant/team"))
    again = post(owner, "/tenant/team/invite", {"email": "new@example.com", "role": "tenant_member"})
    assert again.status_code == 400 and "already has an account" in text(again)
    admin = portal.client(user.id)
    refused = post(admin, "/tenant/team/invite", {"email": "boss@example.com", "role": "tenant_owner"})
    assert refused.status_code == 400 and "Choose a role you may give." in text(refused)
    assert portal.rows(User, User.email == "boss@example.com") == []


class _Receiver(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.seen.append({"event": self.headers.get("X-VoxFleet-Event"), "body": self.rfile.read(length)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_settings_profile_notifications_and_webhooks(portal: Portal) -> None:
    org = portal.tenant("Old Name")
    owner = portal.client(org.owner_id)
    bad = post(owner, "/tenant/settings/profile", {"name": ""})
    assert bad.status_code == 400 and "Give a name of 1 to 200 characters." in text(bad)
    assert post(owner, "/tenant/settings/profile", {"name": "New Name"}).status_code == 302
    assert next(t for t in portal.rows(Tenant) if t.id == org.id).name == "New Name"
    saved = post(owner, "/tenant/settings/notifications", {"weekly_report": "on", "recipients": "admins"})
    assert saved.status_code == 302
    html = owner.get("/tenant/settings").get_data(as_text=True)
    assert 'id="n-weekly_report" name="weekly_report" checked' in html
    assert 'id="n-device_offline" name="device_offline">' in html
    assert '<option value="admins" selected>' in html

    refused = post(owner, "/tenant/webhooks", {"url": "ftp://example.com", "events": []})
    assert refused.status_code == 400 and "starting with https://" in text(refused)
    assert "Choose at least one event." in text(refused)
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        made = post(
            owner, "/tenant/webhooks", {"url": url, "events": ["session.completed", "device.offline"]}
        )
        assert made.status_code == 201
        [hook] = portal.rows(Webhook)
        assert hook.secret in made.get_data(as_text=True) and hook.events == [
            "device.offline",
            "session.completed",
        ]
        assert hook.secret not in owner.get("/tenant/settings").get_data(as_text=True)
        tested = post(owner, f"/tenant/webhooks/{hook.id}/test")
        assert tested.status_code == 200 and "The receiver answered HTTP 204" in text(tested)
        assert _Receiver.seen[-1]["event"] == "webhook.test"
        [delivery] = portal.rows(WebhookDelivery)
        assert delivery.status == "delivered" and delivery.response_code == 204
        assert "HTTP 204" in text(owner.get(f"/tenant/webhooks/{hook.id}"))
        edited = post(
            owner,
            f"/tenant/webhooks/{hook.id}",
            {"url": url, "events": ["device.online"], "description": "ops"},
        )
        assert edited.status_code == 302
        [hook] = portal.rows(Webhook)
        assert hook.events == ["device.online"] and hook.active is False and hook.description == "ops"
        assert post(owner, f"/tenant/webhooks/{hook.id}/delete").status_code == 302
        assert portal.rows(Webhook) == [] and portal.rows(WebhookDelivery) == []
    finally:
        server.shutdown()
