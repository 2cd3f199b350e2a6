"""Pairing through the API, as a device and a tenant admin do it, on SQLite and PostgreSQL: a code,
a claim, credentials once, which then work on the real (embedded) broker and nowhere else."""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

from cloud import pairing
from cloud.broker.embedded import EmbeddedBroker
from cloud.db import DeviceCredential, PairingCode, utcnow
from cloud.scoping import PlatformScope
from protocol.topics import Channel, topic
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.conftest import free_port


def new_code(api: Api, secret: str | None = None) -> tuple[dict, str]:
    secret = secret or secrets.token_urlsafe(32)
    response = api.post("/pairing/codes", json={"secret": secret})
    assert response.status_code == 201, response.json
    return response.json, secret


def test_code_is_short_unambiguous_and_expires_later(api):
    issued, _ = new_code(api)
    assert len(issued["code"]) == 6 and set(issued["code"]) <= set(pairing.ALPHABET)
    assert not set(issued["code"]) & set("0O1IL")
    assert issued["device_key"].startswith("dk-") and issued["poll_interval_s"] > 0


def test_weak_secret_is_refused(api):
    response = api.post("/pairing/codes", json={"secret": "short"})
    assert response.status_code == 400 and "secret" in response.json["error"]["message"]


def test_claim_then_collect_once_and_the_credentials_work_on_the_broker(api):
    tenant = api.tenant()
    issued, secret = new_code(api)
    body = {"code": issued["code"], "secret": secret}
    pending = api.post("/pairing/collect", json=body)
    assert pending.status_code == 202 and pending.json == {"status": "pending"}

    claimed = api.post("/pairing/claim", tenant.write_key,
                       json={"code": issued["code"].lower(), "project_id": str(tenant.project_id),
                             "name": "Lobby"})
    assert claimed.status_code == 201, claimed.json
    assert claimed.json["device_key"] == issued["device_key"] and claimed.json["name"] == "Lobby"
    devices = api.get("/devices", tenant.read_key).json["items"]
    assert [d["device_key"] for d in devices] == [issued["device_key"]]

    collected = api.post("/pairing/collect", json=body)
    assert collected.status_code == 200 and collected.headers["Cache-Control"] == "no-store"
    creds = collected.json
    assert creds["status"] == "paired" and creds["username"] == issued["device_key"]
    assert len(creds["password"]) >= 24
    again = api.post("/pairing/collect", json=body)
    assert again.status_code == 410 and again.json["error"]["code"] == "already_delivered"

    with api.sessions() as db:  # only a hash is kept
        (stored,) = PlatformScope(db).all(DeviceCredential, DeviceCredential.username == creds["username"])
        assert creds["password"] not in stored.password_hash and stored.password_hash.startswith("$argon2")

    # The broker knows the device now: it may publish on its own topics, under its own client id.
    config = api.app.extensions["voxfleet.config"]
    broker = EmbeddedBroker(config.data_dir, port=free_port()).start()
    try:
        assert connect(broker.port, creds["device_key"], creds["username"], creds["password"]) == 0
        assert connect(broker.port, creds["device_key"], creds["username"], "wrong-password-123") != 0
    finally:
        broker.stop()


def connect(port: int, device_key: str, username: str, password: str) -> int:
    done = threading.Event()
    result = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"voxfleet-{device_key}")
    client.username_pw_set(username, password)

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code.value
        if not reason_code.is_failure:
            c.publish(topic(device_key, Channel.PRESENCE), b"{}", qos=1)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(10)
    client.disconnect()
    client.loop_stop()
    return result.get("rc", -1)


def test_a_code_needs_the_secret_that_asked_for_it(api):
    tenant = api.tenant()
    issued, secret = new_code(api)
    api.post("/pairing/claim", tenant.write_key,
             json={"code": issued["code"], "project_id": str(tenant.project_id)})
    for _ in range(pairing.MAX_SECRET_ATTEMPTS):
        wrong = api.post("/pairing/collect", json={"code": issued["code"], "secret": "x" * 40})
        assert wrong.status_code == 403 and wrong.json["error"]["code"] == "wrong_secret"
    # Locked now, even for the right secret: someone was guessing.
    locked = api.post("/pairing/collect", json={"code": issued["code"], "secret": secret})
    assert locked.status_code == 410


def test_expired_unknown_and_foreign_claims_change_nothing(api):
    tenant, other = api.tenant(), api.tenant()
    issued, secret = new_code(api)
    unknown = api.post("/pairing/claim", tenant.write_key,
                       json={"code": "ZZZZZZ", "project_id": str(tenant.project_id)})
    assert unknown.status_code == 404
    foreign = api.post("/pairing/claim", tenant.write_key,
                       json={"code": issued["code"], "project_id": str(other.project_id)})
    assert foreign.status_code == 404 and foreign.json["error"]["code"] == "unknown_project"
    read_only = api.post("/pairing/claim", tenant.read_key,
                         json={"code": issued["code"], "project_id": str(tenant.project_id)})
    assert read_only.status_code == 403
    no_key = api.post("/pairing/claim", json={"code": issued["code"], "project_id": str(tenant.project_id)})
    assert no_key.status_code == 401
    with api.sessions() as db:
        row = PlatformScope(db).first(PairingCode, PairingCode.code == issued["code"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    expired = api.post("/pairing/claim", tenant.write_key,
                       json={"code": issued["code"], "project_id": str(tenant.project_id)})
    assert expired.status_code == 410
    assert api.post("/pairing/collect", json={"code": issued["code"], "secret": secret}).status_code == 410
    assert api.get("/devices", tenant.read_key).json["items"] == []


def test_guessing_codes_is_rate_limited_per_tenant(api):
    tenant = api.tenant()
    statuses = []
    for _ in range(pairing_guesses := 15):
        guess = "".join(secrets.choice(pairing.ALPHABET) for _ in range(6))
        statuses.append(api.post("/pairing/claim", tenant.write_key,
                                 json={"code": guess, "project_id": str(tenant.project_id)}).status_code)
    assert statuses[:10] == [404] * 10 and 429 in statuses[10:pairing_guesses]
    limited = api.post("/pairing/claim", tenant.write_key,
                       json={"code": "ABCDEF", "project_id": str(tenant.project_id)})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert uuid.UUID(str(tenant.project_id))  # the tenant's data is untouched
    assert api.get("/devices", tenant.read_key).json["items"] == []


@pytest.mark.parametrize("code", ["abc-def", " ABC DEF "])
def test_codes_are_typed_as_people_type_them(code):
    assert pairing.normalise_code(code) == "ABCDEF"
