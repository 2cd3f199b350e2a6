"""Tenant isolation through the portal pages, as a property: for random multi-tenant data, a signed-in
owner of one tenant never sees another tenant's names or ids in any page (tenant and member portals,
lists, details, usage and its CSV, billing and its invoices), and every page that acts on an id
answers 404 for another tenant's, changing nothing. On SQLite and PostgreSQL (row-level security
under the scoping layer)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.billing.invoices import close_period, finalize
from cloud.billing.periods import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import ApiKey, Device, Project, UsageRecord, User, VoiceSession, Webhook, utcnow
from cloud.db.billing import Invoice, Subscription
from cloud.scoping import TenantScope
from cloud.security import new_api_key
from tests.cloud.web.tenant.test_fixtures import Org, Portal, portal_fixture, post  # noqa: F401

LAST = Period.of(utcnow()).previous()
# Per tenant: sessions per device, an extra project or not, a webhook or not, number of API keys.
SHAPES = st.lists(
    st.tuples(st.lists(st.integers(0, 2), max_size=3), st.booleans(), st.booleans(), st.integers(0, 2)),
    min_size=2,
    max_size=3,
)


@dataclass
class Made:
    org: Org
    secrets: set[str] = field(default_factory=set)  # strings only this tenant's pages may show
    ids: dict[str, list[uuid.UUID]] = field(default_factory=dict)


def _build(portal: Portal, shape) -> list[Made]:
    made = []
    # One price list for everyone (plans are the platform's, offered to every tenant); each tenant is on
    # it since last month and has last month's invoice, issued.
    with portal.sessions() as db:
        plan = create_plan(db, {"name": "Shared plan", "code": f"p-{uuid.uuid4().hex[:8]}", "currency": "EUR",
                                "monthly_price": 1500})
        db.commit()
        plan_id = plan.id
    for sessions_per_device, extra_project, webhook, keys in shape:
        org = portal.tenant(f"Org {uuid.uuid4().hex[:8]}")
        m = Made(
            org,
            {org.name, str(org.id), str(org.project_id), str(org.owner_id)},
            {k: [] for k in ("device", "session", "project", "key", "webhook", "user", "invoice")},
        )
        m.ids["project"].append(org.project_id)
        m.ids["user"].append(org.owner_id)
        with portal.sessions() as db:
            scope = TenantScope(db, org.id)
            projects = [org.project_id]
            if extra_project:
                project = scope.add(Project(name=f"proj-{uuid.uuid4().hex[:8]}"))
                scope.flush()
                projects.append(project.id)
                m.ids["project"].append(project.id)
                m.secrets |= {project.name, str(project.id)}
            for i, count in enumerate(sessions_per_device):
                device = scope.add(
                    Device(
                        project_id=projects[i % len(projects)],
                        name=f"dev-{uuid.uuid4().hex[:8]}",
                        device_key=f"dk-{uuid.uuid4().hex[:12]}",
                    )
                )
                scope.flush()
                m.ids["device"].append(device.id)
                m.secrets |= {device.name, device.device_key, str(device.id)}
                for n in range(count):
                    session = scope.add(
                        VoiceSession(
                            device_id=device.id,
                            project_id=device.project_id,
                            session_key=f"sk-{uuid.uuid4().hex[:8]}",
                            started_at=utcnow() - timedelta(minutes=10 + n),
                            transcript=f"say-{uuid.uuid4().hex[:8]}",
                            intent_skill="skill-x",
                            intent_name=f"intent-{uuid.uuid4().hex[:6]}",
                            end_state="open",
                        )
                    )
                    scope.add(
                        UsageRecord(
                            device_id=device.id,
                            project_id=device.project_id,
                            event_id=uuid.uuid4(),
                            ts=utcnow() - timedelta(minutes=10),
                            tts_characters=7,
                        )
                    )
                    scope.flush()
                    m.ids["session"].append(session.id)
                    m.secrets |= {
                        str(session.id),
                        session.transcript,
                        session.session_key,
                        session.intent_name,
                    }
            for _ in range(keys):
                new = new_api_key()
                key = scope.add(
                    ApiKey(
                        name=f"key-{uuid.uuid4().hex[:8]}",
                        prefix=new.prefix,
                        key_hash=new.key_hash,
                        scope="read",
                    )
                )
                scope.flush()
                m.ids["key"].append(key.id)
                m.secrets |= {key.name, key.prefix, str(key.id)}
            if webhook:
                hook = scope.add(
                    Webhook(
                        url=f"https://hooks.example.com/{uuid.uuid4().hex[:8]}",
                        events=["device.online"],
                        secret=f"whsec_{uuid.uuid4().hex}",
                    )
                )
                scope.flush()
                m.ids["webhook"].append(hook.id)
                m.secrets |= {hook.url, hook.secret, str(hook.id)}
            owner = scope.get(User, org.owner_id)
            m.secrets.add(owner.email)
            subscribe(db, org.id, plan_id, at=LAST.start)
            invoice = close_period(db, org.id, LAST)
            finalize(db, org.id, invoice.id)
            m.ids["invoice"].append(invoice.id)
            m.secrets.add(str(invoice.id))
            db.commit()
        made.append(m)
    return made


def _pages(me: Made) -> list[str]:
    pages = [
        "/tenant/",
        "/tenant/devices?show=all",
        "/tenant/sessions",
        "/tenant/projects",
        "/tenant/keys",
        "/tenant/team",
        "/tenant/settings",
        "/tenant/usage?range=30d&group_by=device",
        "/tenant/usage?range=24h&group_by=project",
        "/tenant/usage.csv?range=30d&group_by=device",
        "/member/",
        "/member/sessions",
        "/member/keys",
    ]
    pages += [f"/tenant/devices/{i}" for i in me.ids["device"]]
    pages += [f"/tenant/sessions/{i}" for i in me.ids["session"]] + [
        f"/member/sessions/{i}" for i in me.ids["session"]
    ]
    pages += [f"/tenant/projects/{i}" for i in me.ids["project"]]
    pages += [f"/tenant/webhooks/{i}" for i in me.ids["webhook"]]
    pages += ["/tenant/billing"] + [f"/tenant/billing/invoices/{i}{suffix}" for i in me.ids["invoice"]
                                    for suffix in ("", ".csv")]
    return pages


def _snapshot(portal: Portal) -> set:
    return (
        {(r.id, r.tenant_id, r.name, r.project_id, r.status) for r in portal.rows(Device)}
        | {(r.id, r.tenant_id, r.name) for r in portal.rows(Project)}
        | {(r.id, r.tenant_id, r.end_state) for r in portal.rows(VoiceSession)}
        | {(r.id, r.tenant_id, r.revoked_at, r.expires_at) for r in portal.rows(ApiKey)}
        | {(r.id, r.tenant_id, r.url, r.active, tuple(r.events)) for r in portal.rows(Webhook)}
        | {(r.id, r.tenant_id, r.role) for r in portal.rows(User)}
        | {(r.id, r.tenant_id, r.status, r.total) for r in portal.rows(Invoice)}
        | {(r.id, r.tenant_id, r.plan_id, r.next_plan_id, r.cancel_at_period_end)
           for r in portal.rows(Subscription)}
    )


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=SHAPES)
def test_no_page_shows_or_changes_another_tenants_rows(portal: Portal, database, shape) -> None:
    database.wipe()
    made = _build(portal, shape)
    for me in made:
        client = portal.client(me.org.owner_id)
        others = set().union(*(m.secrets for m in made if m is not me))
        for path in _pages(me):
            page = client.get(path)
            assert page.status_code == 200, path
            html = page.get_data(as_text=True)
            leaked = {s for s in others if s in html}
            assert not leaked, (path, leaked)
        # Mine are all there (the check above would pass on an empty page).
        listing = client.get("/tenant/sessions").get_data(as_text=True)
        assert all(str(i) in listing for i in me.ids["session"])

    before = _snapshot(portal)
    for me in made:
        client = portal.client(me.org.owner_id)
        mine = me.org.project_id
        for other in (m for m in made if m is not me):
            for i in other.ids["device"]:
                assert client.get(f"/tenant/devices/{i}").status_code == 404
                assert (
                    post(
                        client, f"/tenant/devices/{i}", {"name": "mine", "project_id": str(mine)}
                    ).status_code
                    == 404
                )
                assert post(client, f"/tenant/devices/{i}/unpair").status_code == 404
                filtered = client.get(f"/tenant/sessions?device={i}").get_data(as_text=True)
                assert not any(str(s) in filtered for s in other.ids["session"])
            for i in other.ids["session"]:
                assert client.get(f"/tenant/sessions/{i}").status_code == 404
                assert client.get(f"/member/sessions/{i}").status_code == 404
                assert post(client, f"/tenant/sessions/{i}/end").status_code == 404
            for i in other.ids["project"]:
                assert client.get(f"/tenant/projects/{i}").status_code == 404
                assert post(client, f"/tenant/projects/{i}", {"name": "mine"}).status_code == 404
                assert post(client, f"/tenant/projects/{i}/delete").status_code == 404
                for device in me.ids["device"]:  # moving my device into their project is refused
                    moved = post(client, f"/tenant/devices/{device}", {"name": "x", "project_id": str(i)})
                    assert moved.status_code == 400
                paired = post(client, "/tenant/devices/pair", {"code": "ABCDEF", "project_id": str(i)})
                assert paired.status_code == 400
            for i in other.ids["key"]:
                assert post(client, f"/tenant/keys/{i}/rotate", {"overlap_seconds": "0"}).status_code == 404
                assert post(client, f"/tenant/keys/{i}/revoke").status_code == 404
            for i in other.ids["webhook"]:
                assert client.get(f"/tenant/webhooks/{i}").status_code == 404
                for suffix in ("", "/test", "/delete"):
                    data = {"url": "https://example.com/x", "events": ["device.online"]}
                    assert post(client, f"/tenant/webhooks/{i}{suffix}", data).status_code == 404
            for i in other.ids["invoice"]:
                assert client.get(f"/tenant/billing/invoices/{i}").status_code == 404
                assert client.get(f"/tenant/billing/invoices/{i}.csv").status_code == 404
            for i in other.ids["user"]:
                assert post(client, f"/tenant/team/{i}/role", {"role": "tenant_member"}).status_code == 404
                assert post(client, f"/tenant/team/{i}/remove").status_code == 404
    assert _snapshot(portal) == before
