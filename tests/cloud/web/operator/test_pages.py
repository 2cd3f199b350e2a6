"""The operator portal through Flask's test client, on SQLite and PostgreSQL: the dashboard counts what is
really stored, every page reads only through the PlatformScope (on PostgreSQL the app role runs under
row-level security, where a read outside the platform scope sees no rows at all), lists page and
filter, forms keep their input and show errors beside the field, and the actions are audited.

The browser tests (tests/cloud/web/operator/test_browser.py) drive the same pages in Chromium on a live cloud.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from cloud import admin
from cloud.billing.invoices import close_period, finalize
from cloud.billing.periods import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import AuditEntry, Device, IngestWorkerStats, Tenant, User, VoiceSession, utcnow
from cloud.db.session import SCOPE_KEY, CloudSession
from cloud.scoping import PlatformScope, TenantScope
from cloud.security import hash_password
from cloud.web.operator import queries as q
from tests.cloud.api.test_fixtures import close_app, make_app


@dataclass
class Portal:
    app: Flask
    sessions: object
    operator: FlaskClient
    operator_id: uuid.UUID

    def login(self, email: str, password: str) -> FlaskClient:
        client = self.app.test_client()
        token = _token(client.get("/login").data)
        done = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
        assert done.status_code == 302, done.data[:500]
        return client


def _token(html: bytes) -> str:
    found = re.search(rb'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1).decode()


def _text(response) -> str:
    """The page's visible text, roughly: tags dropped, whitespace folded (enough to check figures)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


@pytest.fixture
def portal(database, tmp_path) -> Iterator[Portal]:
    app = make_app(database.url, tmp_path)
    sessions = app.extensions["voxfleet.db"][1]
    email, password = f"op-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(14)
    with sessions() as db:
        operator_id = admin.create_operator(db, email, password).id
    client = app.test_client()
    made = Portal(app, sessions, client, operator_id)
    made.operator = made.login(email, password)
    yield made
    close_app(app)


def _tenant(portal: Portal, name: str, status: str = "active") -> Tenant:
    with portal.sessions() as db:
        made = admin.create_tenant(db, name, f"owner-{secrets.token_hex(4)}@example.com", "k")
        if status != "active":
            PlatformScope(db).get(Tenant, made.tenant.id).status = status
            db.commit()
        return made


def _device(portal: Portal, made, presence: str = "offline", status: str = "paired", heartbeat_age=None,
            services: dict | None = None) -> Device:
    with portal.sessions() as db:
        scope = TenantScope(db, made.tenant.id)
        at = utcnow() - heartbeat_age if heartbeat_age is not None else None
        device = scope.add(Device(project_id=made.project.id, device_key=f"dev-{uuid.uuid4().hex[:12]}",
                                  name=f"device {secrets.token_hex(2)}", presence=presence, status=status,
                                  presence_at=utcnow(), last_heartbeat_at=at,
                                  last_heartbeat={"services": services or {}} if at else None))
        scope.commit()
        return device


def _session(portal: Portal, made, device: Device, started_at, end_state: str | None) -> None:
    with portal.sessions() as db:
        scope = TenantScope(db, made.tenant.id)
        scope.add(VoiceSession(device_id=device.id, project_id=made.project.id,
                               session_key=f"s-{uuid.uuid4().hex[:8]}", started_at=started_at,
                               end_state=end_state))
        scope.commit()


def _worker(portal: Portal, worker_id: str, status: str, age: timedelta, received: int, lag: float | None,
            rejected: dict | None = None, unknown_fields: dict | None = None) -> None:
    now = utcnow()
    with portal.sessions() as db:
        PlatformScope(db).add(IngestWorkerStats(
            worker_id=worker_id, host="h", pid=1, status=status,
            started_at=now - age - timedelta(seconds=100), updated_at=now - age, received=received,
            rejected=rejected or {}, lag_s=lag, unknown_fields=unknown_fields))
        db.commit()


def test_dashboard_counts_what_is_stored(portal):
    now = utcnow()
    today = q.day_start(now)
    a, b = _tenant(portal, "Alpha Hotels"), _tenant(portal, "Beta Clinics")
    _tenant(portal, "Gamma Gone", status="suspended")
    online = _device(portal, a, presence="online")
    _device(portal, a, presence="offline")
    _device(portal, b, presence="offline")
    _device(portal, b, presence="online", status="unpaired")       # not part of the fleet any more
    for end_state in ("answered", "answered", "not_understood", "open", None):
        _session(portal, a, online, today + timedelta(seconds=1), end_state)
    _session(portal, b, _device(portal, b), today + timedelta(seconds=2), "not_understood")
    _session(portal, a, online, q.month_start(now) - timedelta(days=1), "not_understood")  # last month
    if today > q.month_start(now):  # earlier this month, but not today (impossible on the 1st)
        _session(portal, a, online, today - timedelta(hours=1), "answered")
    earlier_this_month = 1 if today > q.month_start(now) else 0
    _worker(portal, "w-live", "running", timedelta(seconds=2), received=500, lag=1.5, rejected={"schema": 3})
    _worker(portal, "w-dead", "running", timedelta(minutes=5), received=900, lag=99.0)
    _worker(portal, "w-done", "stopped", timedelta(hours=1), received=10, lag=0.1)

    with portal.sessions() as db:
        figures = q.dashboard(PlatformScope(db), now)
    assert (figures.tenants_active, figures.tenants_suspended) == (2, 1)
    assert (figures.devices_online, figures.devices_offline) == (1, 3)  # the new device of b is offline
    assert figures.sessions_today == 6
    assert figures.sessions_month == 6 + earlier_this_month
    assert (figures.not_understood_today, figures.ended_today) == (2, 4)  # open and unended left out
    assert figures.failed_intent_rate == pytest.approx(0.5)
    ingest = figures.ingest
    assert (ingest.workers_running, ingest.workers_stale, ingest.workers_stopped) == (1, 1, 1)
    assert ingest.lag_s == 1.5 and ingest.rejected == 3       # only the live worker speaks for now
    assert ingest.rate_per_s == pytest.approx(500 / 100, rel=0.05)

    page = portal.operator.get("/operator/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="60">' in html
    text = _text(page)
    for figure in ("2 active tenants", "1 suspended tenants", "1 devices online", "3 devices offline",
                   "6 sessions today", "50.0% failed-intent rate today (2 not understood of 4 ended)",
                   "1.5 s ingest lag", "1 workers running", "1 stale", "1 stopped"):
        assert figure in text, figure


def test_dashboard_with_nothing_yet_says_what_to_do(portal):
    text = _text(portal.operator.get("/operator/"))
    assert "no session has ended today yet" in text
    assert "No ingest worker has reported yet" in text


def test_every_operator_page_reads_only_through_the_platform_scope(portal):
    a = _tenant(portal, "Scoped Co")
    device = _device(portal, a, presence="online", heartbeat_age=timedelta(seconds=5),
                     services={"listener": "ready", "core": "ready", "audio": "failed"})
    _session(portal, a, device, utcnow(), "answered")
    # Billing: a plan, the tenant on it since last month, last month's invoice issued.
    last = Period.of(utcnow()).previous()
    with portal.sessions() as db:
        plan = create_plan(db, {"name": "Scoped plan", "code": "scoped", "currency": "EUR",
                                "monthly_price": 700})
        subscribe(db, a.tenant.id, plan.id, at=last.start)
        invoice = close_period(db, a.tenant.id, last)
        finalize(db, a.tenant.id, invoice.id)
        db.commit()
        plan_id, invoice_id = plan.id, invoice.id
    seen: list[tuple] = []

    def record(state) -> None:
        seen.append(state.session.info.get(SCOPE_KEY))

    event.listen(CloudSession, "do_orm_execute", record)
    try:
        pages = ["/operator/", "/operator/tenants", f"/operator/tenants/{a.tenant.id}", "/operator/system",
                 "/operator/audit", "/operator/users", "/operator/tenants?q=scoped",
                 f"/operator/audit?tenant={a.tenant.slug}", "/operator/billing", "/operator/plans",
                 f"/operator/plans/{plan_id}", f"/operator/billing/tenants/{a.tenant.id}",
                 f"/operator/billing/invoices/{invoice_id}", f"/operator/billing/invoices/{invoice_id}.csv",
                 f"/operator/billing?tenant={a.tenant.slug}&status=finalized"]
        texts = {}
        for path in pages:
            response = portal.operator.get(path)
            assert response.status_code == 200, path
            texts[path] = _text(response)
    finally:
        event.remove(CloudSession, "do_orm_execute", record)
    assert seen and all(s == (None, True) for s in seen), {s for s in seen}
    # ...and what they read is really there (under RLS on PostgreSQL nothing would be outside it).
    found = texts["/operator/tenants?q=scoped"]
    assert "Scoped Co" in found and "1 / 1" in found
    assert device.device_key in texts[f"/operator/tenants/{a.tenant.id}"]
    system = texts["/operator/system"]
    assert device.device_key in system and "failed" in system and "ready" in system
    assert "tenant.create" in texts[f"/operator/audit?tenant={a.tenant.slug}"]
    assert "7.00 EUR 1 finalized, unpaid invoice(s)" in texts["/operator/billing"]
    assert "Scoped plan" in texts["/operator/plans"]
    assert "1 subscriber(s), 1 invoice(s)" in texts["/operator/plans"]
    due = texts[f"/operator/billing?tenant={a.tenant.slug}&status=finalized"]
    assert f"{last.label} Scoped Co 7.00 EUR finalized" in due


def test_tenant_list_searches_and_pages(portal):
    for i in range(27):
        _tenant(portal, f"Fleet {i:02d}")
    _tenant(portal, "Zebra Zoo")
    first = _text(portal.operator.get("/operator/tenants"))
    assert "Showing 1–25 of 28 tenants" in first and "Next" in first
    second = _text(portal.operator.get("/operator/tenants?page=2"))
    assert "Showing 26–28 of 28 tenants" in second and "Zebra Zoo" in second and "Next" not in second
    found = _text(portal.operator.get("/operator/tenants?q=zebra"))
    assert "Zebra Zoo" in found and "Fleet 00" not in found
    by_slug = _text(portal.operator.get("/operator/tenants?q=fleet-03"))
    assert "Fleet 03" in by_slug and "of 1 tenants" in by_slug
    none = portal.operator.get("/operator/tenants?q=nothing%25like")  # a % is searched for, not a wildcard
    assert "No tenant matches" in _text(none)
    bad = portal.operator.get("/operator/tenants?status=deleted")
    assert bad.status_code == 400 and "Choose active, suspended or any status." in _text(bad)


def test_suspend_form_keeps_input_shows_errors_beside_fields_and_audits(portal):
    made = _tenant(portal, "Careful Corp")
    url = f"/operator/tenants/{made.tenant.id}"
    token = _token(portal.operator.get(url).data)
    refused = portal.operator.post(f"{url}/suspend", data={"csrf_token": token, "reason": "unpaid invoices",
                                                           "confirm": "wrong"})
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "unpaid invoices</textarea>" in html                      # input kept
    assert 'aria-describedby="confirm-error"' in html and f"Type {made.tenant.slug} to confirm." in html
    with portal.sessions() as db:
        assert PlatformScope(db).get(Tenant, made.tenant.id).status == "active"
    done = portal.operator.post(f"{url}/suspend", data={"csrf_token": token, "reason": "unpaid invoices",
                                                        "confirm": made.tenant.slug}, follow_redirects=True)
    assert done.status_code == 200 and "Careful Corp is suspended" in _text(done)
    again = portal.operator.post(f"{url}/suspend", data={"csrf_token": token, "reason": "again",
                                                         "confirm": made.tenant.slug}, follow_redirects=True)
    assert "was not suspended: it is already suspended" in _text(again)
    back = portal.operator.post(f"{url}/reactivate", data={"csrf_token": token}, follow_redirects=True)
    assert "Careful Corp is active again" in _text(back)
    twice = portal.operator.post(f"{url}/reactivate", data={"csrf_token": token}, follow_redirects=True)
    assert "was not reactivated" in _text(twice)
    with portal.sessions() as db:
        entries = PlatformScope(db).all(AuditEntry, AuditEntry.tenant_id == made.tenant.id)
    suspended = [e for e in entries if e.action == "tenant.suspended"]
    assert len(suspended) == 1 and suspended[0].actor == f"user:{portal.operator_id}"
    assert suspended[0].details["reason"] == "unpaid invoices"
    assert [e.action for e in entries].count("tenant.reactivated") == 1
    assert portal.operator.get("/operator/tenants/00000000-0000-0000-0000-000000000000").status_code == 404


def test_audit_log_filters_validate_and_page(portal):
    a, b = _tenant(portal, "Audit A"), _tenant(portal, "Audit B")
    with portal.sessions() as db:
        for i in range(55):
            admin.audit(db, "cli", "test.bulk", target=f"thing:{i}", tenant_id=a.tenant.id)
        old = AuditEntry(actor="cli", action="test.old", tenant_id=b.tenant.id,
                         at=utcnow() - timedelta(days=40))
        PlatformScope(db).add(old)
        db.commit()
    first = _text(portal.operator.get(f"/operator/audit?tenant={a.tenant.slug}"))
    assert first.count("test.bulk") == 50 and "Next" in first
    second = _text(portal.operator.get(f"/operator/audit?tenant={a.tenant.slug}&page=2"))
    assert second.count("test.bulk") == 5 and "tenant.create" in second  # its creation, oldest
    only_b = _text(portal.operator.get(f"/operator/audit?tenant={b.tenant.id}&action=test."))
    assert "test.old" in only_b and "test.bulk" not in only_b
    recent = (utcnow() - timedelta(days=7)).date().isoformat()
    dated = _text(portal.operator.get(f"/operator/audit?tenant={b.tenant.slug}&from={recent}"))
    assert "test.old" not in dated and "tenant.create" in dated
    me = portal.operator.get("/operator/")  # nothing audited for a page view; sign-in is
    assert me.status_code == 200
    with portal.sessions() as db:
        email = PlatformScope(db).get(User, portal.operator_id).email
    mine = _text(portal.operator.get(f"/operator/audit?actor={email}&action=signin.succeeded"))
    assert "signin.succeeded" in mine and email in mine
    bad = portal.operator.get("/operator/audit?from=2026-13-01&tenant=no-such-tenant"
                              "&actor=nobody@example.com")
    text = _text(bad)
    assert bad.status_code == 400
    assert "Give a date as YYYY-MM-DD." in text and "No tenant with this slug or id." in text
    assert "No account with this email." in text and 'value="no-such-tenant"' in bad.get_data(as_text=True)
    backwards = portal.operator.get("/operator/audit?from=2026-02-02&to=2026-02-01")
    assert backwards.status_code == 400 and "The end date is before the start date." in _text(backwards)
    empty = _text(portal.operator.get("/operator/audit?action=no.such.action"))
    assert "No entry matches this filter." in empty


def test_disabling_a_user_ends_their_session_and_is_audited(portal):
    made = _tenant(portal, "People Inc")
    password = secrets.token_urlsafe(14)
    with portal.sessions() as db:
        member = TenantScope(db, made.tenant.id).add(User(email=f"m-{secrets.token_hex(3)}@example.com",
                                                          role="tenant_member",
                                                          password_hash=hash_password(password)))
        db.commit()
    member_client = portal.login(member.email, password)
    assert member_client.get("/account").status_code == 200
    users = portal.operator.get(f"/operator/users?q={member.email}")
    assert member.email in _text(users) and "People Inc" in _text(users)
    token = _token(users.data)
    done = portal.operator.post(f"/operator/users/{member.id}/disable",
                                data={"csrf_token": token, "next": f"/operator/users?q={member.email}"})
    assert done.status_code == 302 and done.headers["Location"].startswith("/operator/users?q=")
    ended = member_client.get("/account")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    refused = portal.app.test_client()
    login = refused.post("/login", data={"email": member.email, "password": password,
                                         "csrf_token": _token(refused.get("/login").data)})
    assert login.status_code == 401
    portal.operator.post(f"/operator/users/{member.id}/enable", data={"csrf_token": token, "next": "//evil"})
    portal.login(member.email, password)  # signs in again
    # An operator cannot lock themself out.
    own = portal.operator.post(f"/operator/users/{portal.operator_id}/disable", data={"csrf_token": token},
                               follow_redirects=True)
    assert "You cannot disable your own account" in _text(own)
    with portal.sessions() as db:
        platform = PlatformScope(db)
        assert not platform.get(User, portal.operator_id).disabled
        entries = platform.all(AuditEntry, AuditEntry.target == f"user:{member.id}")
        actions = [(e.action, e.actor) for e in entries]
    assert ("user.disabled", f"user:{portal.operator_id}") in actions
    assert ("user.enabled", f"user:{portal.operator_id}") in actions
    bad = portal.operator.get("/operator/users?role=superuser")
    assert bad.status_code == 400 and "Choose one of the listed roles." in _text(bad)


def test_system_page_flags_stale_devices_and_workers(portal):
    made = _tenant(portal, "Health Co")
    fresh = _device(portal, made, heartbeat_age=timedelta(seconds=10),
                    services={"listener": "ready", "core": "ready", "audio": "ready"})
    stale = _device(portal, made, heartbeat_age=timedelta(minutes=10),
                    services={"listener": "failed", "core": "ready", "audio": "restarting"})
    silent = _device(portal, made)  # never sent a heartbeat
    _worker(portal, "w-dead", "running", timedelta(minutes=5), received=1, lag=None, rejected={"schema": 2})
    page = portal.operator.get("/operator/system")
    html = page.get_data(as_text=True)
    text = _text(page)
    assert "2 of 3 paired devices are stale" in text
    rows = {key: re.search(rf'<tr data-device="{key}".*?</tr>', html, re.S).group(0)
            for key in (fresh.device_key, stale.device_key, silent.device_key)}
    assert "data-stale" not in rows[fresh.device_key]
    assert "data-stale" in rows[stale.device_key] and "data-stale" in rows[silent.device_key]
    assert "restarting" in rows[stale.device_key] and "missing" in rows[silent.device_key]
    assert html.index(silent.device_key) < html.index(stale.device_key) < html.index(fresh.device_key)
    worker = re.search(r'<tr data-worker="w-dead".*?</tr>', html, re.S).group(0)
    assert "stale" in worker and "schema: 2" in worker
    only_stale = portal.operator.get("/operator/system?show=stale").get_data(as_text=True)
    assert fresh.device_key not in only_stale and stale.device_key in only_stale
    assert "Database" in text and "answering" in text
    assert "does not know" not in text  # no worker met a field it does not know


def test_system_page_names_the_fields_newer_devices_send(portal):
    _worker(portal, "w-a", "running", timedelta(seconds=1), received=10, lag=None,
            unknown_fields={"heartbeat.gpu_percent": 120, "event_batch.events.*.emotion": 7})
    _worker(portal, "w-b", "running", timedelta(seconds=1), received=10, lag=None,
            unknown_fields={"heartbeat.gpu_percent": 30})
    text = _text(portal.operator.get("/operator/system"))
    assert "Fields devices sent that this cloud's release does not know" in text
    assert text.index("heartbeat.gpu_percent × 150") < text.index("event_batch.events.*.emotion × 7")
