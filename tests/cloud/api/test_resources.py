"""Projects, devices, sessions and usage through the API: happy paths and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud.api.usage import UsageRow, row_json
from cloud.db import AuditEntry, Device, Project, SessionEvent, VoiceSession
from cloud.scoping import TenantScope
from tests.cloud.api.test_fixtures import Api, ago, api_fixture  # noqa: F401


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- projects ----------------------------------------------------------------------------------------


def test_project_crud(api: Api) -> None:
    t = api.tenant()
    made = api.post("/projects", t.write_key, json={"name": "Lobby", "description": "front desk"})
    assert made.status_code == 201
    project = made.get_json()
    assert api.get(f"/projects/{project['id']}", t.read_key).get_json()["device_count"] == 0
    duplicate = api.post("/projects", t.write_key, json={"name": "Lobby"})
    assert duplicate.status_code == 409 and _error(duplicate)["code"] == "name_taken"
    renamed = api.patch(f"/projects/{project['id']}", t.write_key, json={"name": "Reception"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Reception"
    names = {p["name"] for p in api.get("/projects", t.read_key).get_json()["items"]}
    assert names == {"Default", "Reception"}
    api.device(t, project_id=uuid.UUID(project["id"]))
    busy = api.delete(f"/projects/{project['id']}", t.write_key)
    assert busy.status_code == 409 and _error(busy)["code"] == "project_not_empty"
    default = api.delete(f"/projects/{t.project_id}", t.write_key)
    assert default.status_code == 409 and _error(default)["code"] == "default_project"
    empty = api.post("/projects", t.write_key, json={"name": "Empty"}).get_json()
    assert api.delete(f"/projects/{empty['id']}", t.write_key).status_code == 204
    assert api.get(f"/projects/{empty['id']}", t.read_key).status_code == 404
    actions = [e.action for e in api.rows(AuditEntry, AuditEntry.tenant_id == t.id)]
    assert {"project.create", "project.rename", "project.delete"} <= set(actions)


def test_bad_project_input(api: Api) -> None:
    t = api.tenant()
    unknown = api.post("/projects", t.write_key, json={"name": "X", "tenant_id": str(uuid.uuid4())})
    assert unknown.status_code == 400 and _error(unknown)["code"] == "invalid_request"
    assert "tenant_id" in _error(unknown)["message"]
    empty = api.post("/projects", t.write_key, json={"name": ""})
    assert empty.status_code == 400 and _error(empty)["message"].startswith("name")
    not_json = api.post("/projects", t.write_key, data=b"{name: Lobby", content_type="application/json")
    assert not_json.status_code == 400 and _error(not_json)["code"] == "invalid_json"
    array = api.post("/projects", t.write_key, json=["name"])
    assert array.status_code == 400 and _error(array)["code"] == "invalid_json"
    form = api.post("/projects", t.write_key, data=b"name=Lobby",
                    content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    huge = api.post("/projects", t.write_key, data=b'{"name": "' + b"x" * (1024 * 1024) + b'"}',
                    content_type="application/json")
    assert huge.status_code == 413 and _error(huge)["code"] == "payload_too_large"
    assert api.get("/projects/not-a-uuid", t.read_key).status_code == 404
    assert {p["name"] for p in api.get("/projects", t.read_key).get_json()["items"]} == {"Default"}


def test_injection_looking_input_is_data(api: Api) -> None:
    t = api.tenant()
    other = api.tenant()
    sneaky = "x'); DROP TABLE projects; --"
    made = api.post("/projects", t.write_key, json={"name": sneaky})
    assert made.status_code == 201 and made.get_json()["name"] == sneaky
    assert api.get(f"/sessions?intent={sneaky}' OR '1'='1", t.read_key).get_json()["items"] == []
    # Both tenants' projects are still there: nothing ran as SQL.
    assert len(api.rows(Project)) == 3
    header = "Lobby\r\nX-Injected: yes"
    response = api.post("/projects", t.write_key, json={"name": header})
    assert response.status_code == 201 and "X-Injected" not in response.headers
    assert response.get_json()["name"] == header
    # A key with a header break in it is just an invalid key.
    raw = {"HTTP_AUTHORIZATION": f"Bearer {other.read_key}\r\nX-Tenant: {t.id}"}
    smuggled = api.client.get("/api/v1/projects", environ_base=raw)
    assert smuggled.status_code == 401 and _error(smuggled)["code"] == "invalid_api_key"


# --- devices -----------------------------------------------------------------------------------------


def test_device_list_filters_and_detail(api: Api) -> None:
    t = api.tenant()
    lab = api.project(t, "Lab")
    online = api.device(t, presence="online")
    offline = api.device(t, project_id=lab)
    listed = api.get("/devices", t.read_key).get_json()
    assert {d["id"] for d in listed["items"]} == {str(online.id), str(offline.id)}
    assert listed["next_cursor"] is None
    assert {"presence", "presence_at", "last_heartbeat_at", "status"} <= set(listed["items"][0])
    only_online = api.get("/devices?presence=online", t.read_key).get_json()["items"]
    assert [d["id"] for d in only_online] == [str(online.id)]
    in_lab = api.get(f"/devices?project_id={lab}", t.read_key).get_json()["items"]
    assert [d["id"] for d in in_lab] == [str(offline.id)]
    bad = api.get("/devices?presence=sideways", t.read_key)
    assert bad.status_code == 400 and _error(bad)["message"].startswith("presence")
    unknown = api.get("/devices?tenant_id=x", t.read_key)
    assert unknown.status_code == 400 and "tenant_id" in _error(unknown)["message"]
    detail = api.get(f"/devices/{online.id}", t.read_key).get_json()
    assert detail["config"] == {"desired": None, "ack": None} and detail["last_heartbeat"] is None


def test_device_rename_and_move(api: Api) -> None:
    t, other = api.tenant(), api.tenant()
    device = api.device(t)
    lab = api.project(t, "Lab")
    moved = api.patch(f"/devices/{device.id}", t.write_key, json={"name": "hall", "project_id": str(lab)})
    assert moved.status_code == 200
    assert moved.get_json()["name"] == "hall" and moved.get_json()["project_id"] == str(lab)
    foreign = api.patch(f"/devices/{device.id}", t.write_key, json={"project_id": str(other.project_id)})
    assert foreign.status_code == 422 and _error(foreign)["code"] == "unknown_project"
    assert api.rows(Device, Device.id == device.id)[0].project_id == lab


def test_commands_and_config_refuse_bad_input_before_anything_is_stored(api: Api) -> None:
    t = api.tenant()
    device = api.device(t)
    cases = [
        ({"action": "self_destruct"}, "action"),
        ({"action": "speak", "args": {"text": ""}}, "args.text"),
        ({"action": "speak", "args": {"text": "hi", "volume": 11}}, "args.volume"),
        ({"action": "tap_start", "args": {"rate": 1000}}, "args.rate"),
        ({"action": "reload", "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = api.post(f"/devices/{device.id}/commands", t.write_key, json=body)
        assert response.status_code == 400, body
        assert _error(response)["message"].startswith(field), (body, _error(response))
    for body, field in [({"wake_threshold": 2}, "wake_threshold"), ({"volume": 3}, "volume"),
                        ({"silence_end": "long"}, "silence_end")]:
        response = api.put(f"/devices/{device.id}/config", t.write_key, json=body)
        assert response.status_code == 400 and _error(response)["message"].startswith(field)
    assert api.get(f"/devices/{device.id}/config", t.read_key).get_json() == {"desired": None, "ack": None}
    unknown_command = api.get(f"/devices/{device.id}/commands/{uuid.uuid4()}", t.read_key)
    assert unknown_command.status_code == 404


def test_unpaired_devices_take_no_orders(api: Api) -> None:
    t = api.tenant()
    device = api.device(t)
    unpaired = api.delete(f"/devices/{device.id}", t.write_key)
    assert unpaired.status_code == 200 and unpaired.get_json()["status"] == "unpaired"
    refused = api.post(f"/devices/{device.id}/commands", t.write_key, json={"action": "reload"})
    assert refused.status_code == 409 and _error(refused)["code"] == "device_unpaired"
    assert api.put(f"/devices/{device.id}/config", t.write_key, json={"lang": "en-us"}).status_code == 409


# --- sessions ----------------------------------------------------------------------------------------


def test_session_pages_have_no_gaps_or_duplicates_with_equal_timestamps(api: Api) -> None:
    t = api.tenant()
    device = api.device(t)
    same = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    made = {api.session(t, device, same).id for _ in range(7)}
    made |= {api.session(t, device, same - timedelta(minutes=i)).id for i in range(1, 6)}
    seen: list[str] = []
    cursor = None
    while True:
        path = "/sessions?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(path, t.read_key).get_json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 12
    assert set(seen) == {str(i) for i in made}
    started = [api.get(f"/sessions/{s}", t.read_key).get_json()["started_at"] for s in seen]
    assert started == sorted(started, reverse=True)
    bad = api.get("/sessions?cursor=garbage!!", t.read_key)
    assert bad.status_code == 400 and _error(bad)["code"] == "invalid_cursor"
    assert api.get("/sessions?limit=201", t.read_key).status_code == 400


def test_session_filters(api: Api) -> None:
    t = api.tenant()
    lab = api.project(t, "Lab")
    kitchen, lab_device = api.device(t), api.device(t, project_id=lab)
    timer = api.session(t, kitchen, ago(hours=3), intent_skill="skill-timer", intent_name="set_timer",
                        end_state="handled", ended_at=ago(hours=3))
    weather = api.session(t, lab_device, ago(hours=2), intent_skill="skill-weather", intent_name="forecast",
                          end_state="answered", ended_at=ago(hours=2))
    failed = api.session(t, kitchen, ago(hours=1), end_state="not_understood", ended_at=ago(hours=1))

    def ids(query: str) -> set[str]:
        response = api.get(f"/sessions?{query}", t.read_key)
        assert response.status_code == 200, response.get_json()
        return {s["id"] for s in response.get_json()["items"]}

    assert ids(f"device_id={kitchen.id}") == {str(timer.id), str(failed.id)}
    assert ids(f"project_id={lab}") == {str(weather.id)}
    assert ids("intent=set_timer") == {str(timer.id)}
    assert ids("intent=skill-weather:forecast") == {str(weather.id)}
    assert ids("outcome=not_understood") == {str(failed.id)}
    window = f"from={ago(hours=2, minutes=30).isoformat()}&to={ago(minutes=90).isoformat()}"
    assert ids(window.replace("+", "%2B")) == {str(weather.id)}
    naive = api.get("/sessions?from=2026-11-20T10:00:00", t.read_key)
    assert naive.status_code == 400 and _error(naive)["message"].startswith("from")
    assert api.get("/sessions?outcome=exploded", t.read_key).status_code == 400


def test_session_detail_has_ordered_events_and_end_sends_only_for_open_sessions(api: Api) -> None:
    t = api.tenant()
    device = api.device(t)
    done = api.session(t, device, ago(minutes=5), end_state="answered", ended_at=ago(minutes=4))
    with api.sessions() as db:
        scope = TenantScope(db, t.id)
        for seq, kind in [(3, "answer.spoken"), (1, "session.started"), (2, "utterance")]:
            scope.add(SessionEvent(device_id=device.id, session_id=done.id, event_id=uuid.uuid4(), seq=seq,
                                   type=kind, ts=ago(minutes=5), payload={"seq": seq}))
        scope.commit()
    detail = api.get(f"/sessions/{done.id}", t.read_key).get_json()
    assert [e["seq"] for e in detail["events"]] == [1, 2, 3]
    ended = api.post(f"/sessions/{done.id}/end", t.write_key)
    assert ended.status_code == 409 and _error(ended)["code"] == "session_ended"
    assert api.post(f"/sessions/{uuid.uuid4()}/end", t.write_key).status_code == 404
    assert len(api.rows(VoiceSession)) == 1


# --- usage -------------------------------------------------------------------------------------------


def test_usage_sums_per_period_device_and_project(api: Api) -> None:
    t = api.tenant()
    lab = api.project(t, "Lab")
    a, b = api.device(t), api.device(t, project_id=lab)
    day1 = datetime(2026, 10, 30, 10, tzinfo=UTC)
    day2 = datetime(2026, 11, 2, 23, 59, tzinfo=UTC)
    api.usage(t, a, day1, wake_words=1, stt_seconds=1.5, tts_characters=40, intents_handled=1)
    api.usage(t, a, day2, wake_words=2, stt_seconds=2.0, llm_tokens=100)
    api.usage(t, b, day2, wake_words=1, tts_seconds=3.25)
    api.session(t, a, day1)
    api.session(t, b, day2)
    window = "from=2026-10-01T00:00:00Z&to=2026-12-01T00:00:00Z"
    daily = api.get(f"/usage?period=day&{window}", t.read_key).get_json()
    assert [(r["period"], r["wake_words"], r["sessions"]) for r in daily["rows"]] == [
        ("2026-10-30", 1, 1), ("2026-11-02", 3, 1)]
    assert daily["totals"]["stt_seconds"] == 3.5 and daily["totals"]["llm_tokens"] == 100
    monthly = api.get(f"/usage?period=month&group_by=project&{window}", t.read_key).get_json()
    rows = {(r["period"], r["project_id"]): r for r in monthly["rows"]}
    assert rows[("2026-11", str(lab))]["tts_seconds"] == 3.25
    assert rows[("2026-11", str(t.project_id))]["wake_words"] == 2
    assert rows[("2026-10", str(t.project_id))]["tts_characters"] == 40
    by_device = api.get(f"/usage?period=month&group_by=device&{window}", t.read_key).get_json()
    assert {r["device_id"] for r in by_device["rows"]} == {str(a.id), str(b.id)}
    other = api.tenant()
    assert api.get(f"/usage?{window}", other.read_key).get_json()["rows"] == []
    assert api.get("/usage?period=week", t.read_key).status_code == 400
    backwards = api.get("/usage?from=2026-12-01T00:00:00Z&to=2026-10-01T00:00:00Z", t.read_key)
    assert backwards.status_code == 400


def test_usage_rows_serialise_as_the_row_model_would() -> None:
    """GET /usage writes its rows without validating each through UsageRow (too slow by device): the
    JSON must still be exactly what the model gives, for the values the databases hand back."""
    device = uuid.uuid4()
    samples = [
        {"period": "2026-11-02", "device_id": device, "sessions": 3, "wake_words": 2, "stt_seconds": 1,
         "tts_characters": Decimal("40"), "tts_seconds": 3.25, "intents_handled": 1,
         "llm_tokens": Decimal("0")},
        {"period": "2026-11", "project_id": None, "sessions": 0, "wake_words": 0, "stt_seconds": 0.0,
         "tts_characters": 0, "tts_seconds": Decimal("2.5"), "intents_handled": 0, "llm_tokens": 7},
        {"period": "2026-11-02T09:00", "project_id": str(device), "sessions": 1, "wake_words": 1,
         "stt_seconds": 1.4, "tts_characters": 38, "tts_seconds": 2.1, "intents_handled": 1, "llm_tokens": 0},
    ]
    for row in samples:
        expected = UsageRow.model_validate(row).model_dump(mode="json")
        got = row_json(row)
        assert got == expected
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]
