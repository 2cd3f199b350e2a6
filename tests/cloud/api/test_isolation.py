"""Tenant isolation through the API, as a property: for random multi-tenant data, no endpoint returns
or changes another tenant's rows, on SQLite and on PostgreSQL (with row-level security under it)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.db import ApiKey, Device, Project, VoiceSession, Webhook, utcnow
from cloud.scoping import TenantScope
from tests.cloud.api.test_fixtures import Api, Tenant, api_fixture  # noqa: F401

SHAPES = st.lists(
    st.tuples(st.lists(st.integers(0, 3), max_size=3), st.booleans(), st.booleans()),
    min_size=2, max_size=3,
)


def _snapshot(api: Api) -> dict[str, set]:
    """Every tenant row that an API call could change, by value."""
    return {
        "projects": {(r.id, r.tenant_id, r.name, r.description) for r in api.rows(Project)},
        "devices": {(r.id, r.tenant_id, r.name, r.project_id, r.status) for r in api.rows(Device)},
        "sessions": {(r.id, r.tenant_id, r.end_state) for r in api.rows(VoiceSession)},
        "webhooks": {(r.id, r.tenant_id, r.url, r.secret, tuple(r.events), r.active)
                     for r in api.rows(Webhook)},
        "keys": {(r.id, r.tenant_id, r.revoked_at, r.expires_at) for r in api.rows(ApiKey)},
    }


def _build(api: Api, shape: list[tuple[list[int], bool, bool]]) -> list[Tenant]:
    tenants = []
    start = utcnow() - timedelta(hours=1)
    for sessions_per_device, extra_project, webhook in shape:
        t = api.tenant()
        if extra_project:
            api.project(t, "Extra")
        for n in sessions_per_device:
            device = api.device(t)
            for i in range(n):
                api.session(t, device, start + timedelta(minutes=i))
        if webhook:
            with api.sessions() as db:
                scope = TenantScope(db, t.id)
                scope.add(Webhook(url="https://example.com/hook", events=["device.online"], secret="whsec_x"))
                scope.commit()
        tenants.append(t)
    return tenants


def _ids(api: Api, model: type, tenant: Tenant) -> set[str]:
    return {str(r.id) for r in api.rows(model, model.tenant_id == tenant.id)}


LISTS = {"/projects": Project, "/devices": Device, "/sessions?limit=200": VoiceSession, "/webhooks": Webhook,
         "/api-keys": ApiKey}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=SHAPES)
def test_no_endpoint_reaches_another_tenants_rows(api: Api, database, shape) -> None:
    database.wipe()
    api.app.config.update(API_RATE_LIMIT_BURST=100_000, API_IP_RATE_LIMIT_BURST=100_000)
    tenants = _build(api, shape)
    for me in tenants:
        for path, model in LISTS.items():
            response = api.get(path, me.read_key)
            assert response.status_code == 200
            assert {item["id"] for item in response.get_json()["items"]} == _ids(api, model, me), path
        usage = api.get("/usage?period=month", me.read_key).get_json()
        assert usage["totals"]["sessions"] == len(_ids(api, VoiceSession, me))

    before = _snapshot(api)
    for me in tenants:
        for other in (t for t in tenants if t is not me):
            for project in _ids(api, Project, other):
                assert api.get(f"/projects/{project}", me.read_key).status_code == 404
                renamed = api.patch(f"/projects/{project}", me.write_key, json={"name": "mine"})
                assert renamed.status_code == 404
                assert api.delete(f"/projects/{project}", me.write_key).status_code == 404
                moved = api.post("/projects", me.write_key, json={"name": f"p-{project}"})
                assert moved.status_code == 201
            for device in _ids(api, Device, other):
                for method, path, body in [
                    ("GET", f"/devices/{device}", None), ("GET", f"/devices/{device}/config", None),
                    ("PATCH", f"/devices/{device}", {"name": "mine"}),
                    ("PUT", f"/devices/{device}/config", {"lang": "en-us"}),
                    ("POST", f"/devices/{device}/commands", {"action": "reload"}),
                    ("DELETE", f"/devices/{device}", None),
                ]:
                    assert api.call(method, path, me.write_key, json=body).status_code == 404, (method, path)
                assert api.get(f"/sessions?device_id={device}", me.read_key).get_json()["items"] == []
            for device in _ids(api, Device, me):
                foreign = api.patch(f"/devices/{device}", me.write_key,
                                    json={"project_id": str(other.project_id)})
                assert foreign.status_code == 422
            for session in _ids(api, VoiceSession, other):
                assert api.get(f"/sessions/{session}", me.read_key).status_code == 404
                assert api.post(f"/sessions/{session}/end", me.write_key).status_code == 404
            for hook in _ids(api, Webhook, other):
                for method, path in [("GET", f"/webhooks/{hook}"), ("DELETE", f"/webhooks/{hook}"),
                                     ("POST", f"/webhooks/{hook}/test"),
                                     ("GET", f"/webhooks/{hook}/deliveries"),
                                     ("POST", f"/webhooks/{hook}/rotate-secret")]:
                    assert api.call(method, path, me.write_key).status_code == 404, (method, path)
            for key in _ids(api, ApiKey, other):
                assert api.delete(f"/api-keys/{key}", me.write_key).status_code == 404
                assert api.post(f"/api-keys/{key}/rotate", me.write_key, json={}).status_code == 404
    after = _snapshot(api)
    # Only the projects each tenant made for itself are new; nothing that existed changed.
    assert before["devices"] == after["devices"] and before["sessions"] == after["sessions"]
    assert before["webhooks"] == after["webhooks"] and before["keys"] == after["keys"]
    assert before["projects"] <= after["projects"]
    for project in after["projects"] - before["projects"]:
        assert project[2].startswith("p-")
