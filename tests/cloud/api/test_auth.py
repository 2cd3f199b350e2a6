"""API keys: authentication, scopes, suspension, rotation with overlap, revocation, rate limits."""

from __future__ import annotations

import uuid
from datetime import timedelta

from openapi_spec_validator import validate
from sqlalchemy import update

from cloud.db import ApiKey, AuditEntry, Tenant, utcnow
from cloud.scoping import PlatformScope
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401


def _code(response) -> str:
    return response.get_json()["error"]["code"]


def test_requests_without_a_valid_key_are_refused(api: Api) -> None:
    t = api.tenant()
    assert api.get("/projects", t.read_key).status_code == 200
    missing = api.get("/projects")
    assert missing.status_code == 401 and _code(missing) == "missing_api_key"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert _code(api.get("/projects", "vfk_0123456789ab_nope")) == "invalid_api_key"
    assert _code(api.get("/projects", "not-even-shaped-like-a-key")) == "invalid_api_key"
    # Right prefix, wrong secret: the hash comparison refuses it.
    prefix = t.read_key.split("_")[1]
    assert _code(api.get("/projects", f"vfk_{prefix}_{'x' * 43}")) == "invalid_api_key"
    wrong_scheme = api.get("/projects", headers={"Authorization": f"Basic {t.read_key}"})
    assert wrong_scheme.status_code == 401 and _code(wrong_scheme) == "invalid_authorization"


def test_public_endpoints_need_no_key(api: Api) -> None:
    assert api.get("/health").status_code == 200
    doc = api.get("/openapi.json")
    assert doc.status_code == 200
    validate(doc.get_json())


def test_openapi_describes_every_route(api: Api) -> None:
    doc = api.get("/openapi.json").get_json()
    for rule in api.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.rule.removeprefix("/api/v1")
        for converter in ("uuid:", "string:", "int:"):
            path = path.replace(f"<{converter}", "<")
        path = path.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], f"{method} {path} missing from openapi.json"
    config_put = doc["paths"]["/devices/{device_id}/config"]["put"]
    schema_name = config_put["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "wake_word" in doc["components"]["schemas"][schema_name]["properties"]
    sessions = {p["name"] for p in doc["paths"]["/sessions"]["get"]["parameters"]}
    assert {"device_id", "project_id", "from", "to", "intent", "outcome", "cursor", "limit"} <= sessions


def test_read_keys_cannot_write(api: Api) -> None:
    t = api.tenant()
    refused = api.post("/projects", t.read_key, json={"name": "Garage"})
    assert refused.status_code == 403 and _code(refused) == "insufficient_scope"
    assert api.post("/projects", t.write_key, json={"name": "Garage"}).status_code == 201
    names = [p["name"] for p in api.get("/projects", t.read_key).get_json()["items"]]
    assert names.count("Garage") == 1


def test_suspended_tenants_are_refused(api: Api) -> None:
    t = api.tenant()
    with api.sessions() as db:
        platform = PlatformScope(db)
        platform.execute(update(Tenant).where(Tenant.id == t.id).values(status="suspended",
                                                                        suspended_at=utcnow()))
        platform.commit()
    response = api.get("/projects", t.read_key)
    assert response.status_code == 403 and _code(response) == "tenant_suspended"


def test_created_key_is_shown_once_works_and_is_audited(api: Api) -> None:
    t = api.tenant()
    made = api.post("/api-keys", t.write_key, json={"name": "ci", "scope": "read"})
    assert made.status_code == 201
    body = made.get_json()
    assert body["key"].startswith("vfk_") and body["scope"] == "read"
    assert api.get("/projects", body["key"]).status_code == 200
    listed = api.get("/api-keys", t.read_key).get_json()["items"]
    assert body["id"] in {k["id"] for k in listed}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert body["key"] not in api.get("/api-keys", t.read_key).get_data(as_text=True)
    actions = {(e.action, e.target) for e in api.rows(AuditEntry, AuditEntry.tenant_id == t.id)}
    assert ("api_key.create", f"api_key:{body['prefix']}") in actions
    entries = api.rows(AuditEntry, AuditEntry.tenant_id == t.id)
    assert all(body["key"] not in str(e.details) for e in entries)


def test_revoked_keys_stop_working(api: Api) -> None:
    t = api.tenant()
    made = api.post("/api-keys", t.write_key, json={"scope": "write"}).get_json()
    assert api.delete(f"/api-keys/{made['id']}", t.write_key).status_code == 200
    refused = api.get("/projects", made["key"])
    assert refused.status_code == 401 and _code(refused) == "api_key_revoked"
    assert "api_key.revoke" in {e.action for e in api.rows(AuditEntry, AuditEntry.tenant_id == t.id)}


def test_rotation_keeps_the_old_key_for_the_overlap_only(api: Api) -> None:
    t = api.tenant()
    old = api.post("/api-keys", t.write_key, json={"name": "deploy", "scope": "write"}).get_json()
    rotated = api.post(f"/api-keys/{old['id']}/rotate", old["key"], json={"overlap_seconds": 3600})
    assert rotated.status_code == 201
    new = rotated.get_json()
    assert new["key"] != old["key"] and new["name"] == "deploy" and new["scope"] == "write"
    # Both work during the overlap.
    assert api.get("/projects", old["key"]).status_code == 200
    assert api.get("/projects", new["key"]).status_code == 200
    # Past the overlap (moved into the past rather than waiting), the old one is refused.
    with api.sessions() as db:
        platform = PlatformScope(db)
        platform.execute(update(ApiKey).where(ApiKey.id == uuid.UUID(old["id"])).values(
            expires_at=utcnow() - timedelta(seconds=1)))
        platform.commit()
    expired = api.get("/projects", old["key"])
    assert expired.status_code == 401 and _code(expired) == "api_key_expired"
    assert api.get("/projects", new["key"]).status_code == 200
    again = api.post(f"/api-keys/{old['id']}/rotate", new["key"], json={})
    assert again.status_code == 409 and _code(again) == "api_key_inactive"
    assert "api_key.rotate" in {e.action for e in api.rows(AuditEntry, AuditEntry.tenant_id == t.id)}


def test_last_used_is_recorded(api: Api) -> None:
    t = api.tenant()
    prefix = t.read_key.split("_")[1]
    assert api.rows(ApiKey, ApiKey.prefix == prefix)[0].last_used_at is None
    api.get("/projects", t.read_key)
    first = api.rows(ApiKey, ApiKey.prefix == prefix)[0].last_used_at
    assert first is not None
    api.get("/projects", t.read_key)
    # Not rewritten on every request: at most once a minute.
    assert api.rows(ApiKey, ApiKey.prefix == prefix)[0].last_used_at == first


def test_another_tenants_key_cannot_be_managed(api: Api) -> None:
    a, b = api.tenant(), api.tenant()
    b_keys = api.get("/api-keys", b.read_key).get_json()["items"]
    for key in b_keys:
        assert api.delete(f"/api-keys/{key['id']}", a.write_key).status_code == 404
        assert api.post(f"/api-keys/{key['id']}/rotate", a.write_key, json={}).status_code == 404
    assert api.get("/projects", b.read_key).status_code == 200
    assert {k["id"] for k in api.get("/api-keys", a.read_key).get_json()["items"]}.isdisjoint(
        {k["id"] for k in b_keys})


def test_bad_key_bodies_name_the_field(api: Api) -> None:
    t = api.tenant()
    bad_scope = api.post("/api-keys", t.write_key, json={"scope": "admin"})
    assert bad_scope.status_code == 400 and bad_scope.get_json()["error"]["message"].startswith("scope")
    unknown = api.post("/api-keys", t.write_key, json={"scope": "read", "tenant_id": str(t.id)})
    assert unknown.status_code == 400 and "tenant_id" in unknown.get_json()["error"]["message"]
    too_long = api.post(f"/api-keys/{t.id}/rotate", t.write_key, json={"overlap_seconds": 10**9})
    assert too_long.status_code == 400 and "overlap_seconds" in too_long.get_json()["error"]["message"]


def test_rate_limit_per_key_returns_429_with_retry_after(api: Api) -> None:
    api.app.config.update(API_RATE_LIMIT_BURST=3, API_RATE_LIMIT_PER_MINUTE=0.01)
    t, other = api.tenant(), api.tenant()
    codes = [api.get("/projects", t.read_key).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.get("/projects", t.read_key)
    assert _code(limited) == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    # Each key has its own bucket.
    assert api.get("/projects", other.read_key).status_code == 200


def test_rate_limit_per_address_for_unauthenticated_calls(api: Api) -> None:
    api.app.config.update(API_IP_RATE_LIMIT_BURST=2, API_IP_RATE_LIMIT_PER_MINUTE=0.01)
    t = api.tenant()
    assert [api.get("/projects", "vfk_0123456789ab_guess").status_code for _ in range(3)] == [401, 401, 429]
    assert api.get("/health").status_code == 429
    assert "Retry-After" in api.get("/health").headers
    # A valid key is limited per key, not by the address's failures.
    assert api.get("/projects", t.read_key).status_code == 200
