"""Webhooks end to end: registered through the API, delivered signed to a real HTTP server, retried
with backoff, logged with their response codes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update

from cloud.db import WebhookDelivery
from cloud.db.base import utcnow
from cloud.scoping import PlatformScope
from cloud.webhooks import deliver
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.cloud.webhooks.receiver import WAIT, Received, Receiver, queue_event, receiver_fixture  # noqa: F401


def _verify(secret: str, got: Received) -> None:
    timestamp = got.headers["X-VoxFleet-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-VoxFleet-Signature"] == f"sha256={expected}"
    wrong = hmac.new(b"not-the-secret", f"{timestamp}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-VoxFleet-Signature"] != f"sha256={wrong}"


def test_webhook_crud_shows_the_secret_once(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    made = api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online",
                                                                                     "session.completed"]})
    assert made.status_code == 201
    hook = made.get_json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["device.online", "session.completed"]
    listed = api.get("/webhooks", t.read_key)
    assert hook["secret"] not in listed.get_data(as_text=True)
    assert "secret" not in api.get(f"/webhooks/{hook['id']}", t.read_key).get_json()
    changed = api.patch(f"/webhooks/{hook['id']}", t.write_key, json={"events": ["device.offline"],
                                                                      "active": False})
    assert changed.get_json()["events"] == ["device.offline"] and changed.get_json()["active"] is False
    rotated = api.post(f"/webhooks/{hook['id']}/rotate-secret", t.write_key).get_json()
    assert rotated["secret"] != hook["secret"]
    other = api.tenant()
    assert api.get(f"/webhooks/{hook['id']}", other.read_key).status_code == 404
    assert api.delete(f"/webhooks/{hook['id']}", other.write_key).status_code == 404
    assert api.delete(f"/webhooks/{hook['id']}", t.write_key).status_code == 204
    assert api.get("/webhooks", t.read_key).get_json()["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/x", "events": ["device.online"]}, "url"),
    ({"url": "https://user:pw@example.com/x", "events": ["device.online"]}, "url"),
    ({"url": "https://example.com/x", "events": ["device.exploded"]}, "events"),
    ({"url": "https://example.com/x", "events": []}, "events"),
    ({"url": "https://example.com/x", "events": ["device.online"], "secret": "mine"}, "secret"),
])
def test_bad_webhooks_are_refused_with_the_field(api: Api, body: dict, field: str) -> None:
    t = api.tenant()
    response = api.post("/webhooks", t.write_key, json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith(field)
    assert api.get("/webhooks", t.read_key).get_json()["items"] == []


def test_private_addresses_are_refused_unless_allowed(api: Api, receiver: Receiver) -> None:
    api.app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    t = api.tenant()
    for url in (receiver.url, "http://10.1.2.3/hook", "http://[::1]:8080/hook", "http://169.254.169.254/"):
        response = api.post("/webhooks", t.write_key, json={"url": url, "events": ["device.online"]})
        assert response.status_code == 400, url
    with pytest.raises(deliver.UnsafeUrl):
        deliver.check_url("http://localhost:9/hook", allow_private=False, resolve=True)


def test_test_delivery_is_signed_and_logged(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    made = api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online"]})
    hook = made.get_json()
    result = api.post(f"/webhooks/{hook['id']}/test", t.write_key)
    assert result.status_code == 200
    body = result.get_json()
    assert body["response_code"] == 200 and body["delivered"] is True
    [got] = receiver.requests
    _verify(hook["secret"], got)
    assert got.headers["X-VoxFleet-Event"] == "webhook.test"
    assert got.headers["X-VoxFleet-Delivery"] == body["delivery"]["delivery_key"]
    assert json.loads(got.body)["data"]["webhook_id"] == hook["id"]
    receiver.answers.append(503)
    failed = api.post(f"/webhooks/{hook['id']}/test", t.write_key).get_json()
    assert failed["response_code"] == 503 and failed["delivery"]["status"] == "failed"
    log = api.get(f"/webhooks/{hook['id']}/deliveries", t.read_key).get_json()["items"]
    assert [(d["response_code"], d["status"]) for d in log] == [(503, "failed"), (200, "delivered")]
    assert log[0]["response_excerpt"] == "answered 503"


def _enqueue(api: Api, tenant_id: uuid.UUID, event: str, data: dict) -> uuid.UUID:
    return queue_event(api.sessions, tenant_id, event, data)


def test_a_failed_delivery_is_retried_with_backoff(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    hook = api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["session.completed"]})
    secret = hook.get_json()["secret"]
    key = _enqueue(api, t.id, "session.completed", {"session_id": "s-1", "transcript": "hello"})
    receiver.answers.append(500)
    assert deliver.deliver_due(api.sessions, allow_private=True) == 1
    [row] = api.rows(WebhookDelivery)
    assert (row.status, row.attempts, row.response_code) == ("pending", 1, 500)
    assert row.next_attempt_at - row.last_attempt_at == timedelta(seconds=deliver.BACKOFF_S[0])
    # Not due yet: nothing is sent.
    assert deliver.deliver_due(api.sessions, allow_private=True) == 0
    assert deliver.deliver_due(api.sessions, allow_private=True, now=row.next_attempt_at) == 1
    [row] = api.rows(WebhookDelivery)
    assert (row.status, row.attempts, row.response_code) == ("delivered", 2, 200)
    assert len(receiver.requests) == 2
    for got in receiver.requests:
        _verify(secret, got)
        assert got.headers["X-VoxFleet-Delivery"] == str(key)
        assert got.headers["X-VoxFleet-Event"] == "session.completed"
        assert json.loads(got.body)["data"] == {"session_id": "s-1", "transcript": "hello"}


def test_a_delivery_gives_up_after_the_last_attempt(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.offline"]})
    _enqueue(api, t.id, "device.offline", {"device_id": "d"})
    receiver.answers.extend([500] * deliver.MAX_ATTEMPTS)
    for _ in range(deliver.MAX_ATTEMPTS):
        [row] = api.rows(WebhookDelivery)
        assert row.status == "pending"
        assert deliver.deliver_due(api.sessions, allow_private=True, now=row.next_attempt_at) == 1
    [row] = api.rows(WebhookDelivery)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", deliver.MAX_ATTEMPTS, None)
    assert len(receiver.requests) == deliver.MAX_ATTEMPTS


def test_the_worker_refuses_private_addresses_when_not_allowed(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online"]})
    _enqueue(api, t.id, "device.online", {"device_id": "d"})
    assert deliver.deliver_due(api.sessions, allow_private=False) == 1
    [row] = api.rows(WebhookDelivery)
    assert row.response_code is None and "private" in row.error and row.status == "pending"
    assert receiver.requests == []


def test_the_delivery_thread_sends_what_is_due(api: Api, receiver: Receiver) -> None:
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["usage.threshold"]})
    worker = deliver.start_delivery_thread(api.app.extensions["voxfleet.config"], allow_private=True,
                                           interval=0.1)
    try:
        key = _enqueue(api, t.id, "usage.threshold", {"meter": "stt_seconds", "threshold": 3600})
        got = receiver.arrived.get(timeout=WAIT)
        assert got.headers["X-VoxFleet-Delivery"] == str(key)
        for _ in range(int(WAIT / 0.05)):  # the worker records the answer just after the receiver saw it
            [row] = api.rows(WebhookDelivery)
            if row.status != "pending":
                break
            time.sleep(0.05)
        assert (row.status, row.response_code) == ("delivered", 200)
    finally:
        worker.stop()


def test_a_claim_is_leased_from_the_moment_it_is_made(api: Api, receiver: Receiver) -> None:
    """A pass that began minutes ago (slow receivers before this delivery) claims it only now: while it
    is being sent, a second worker must not find it due and send it again."""
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online"]})
    key = _enqueue(api, t.id, "device.online", {"device_id": "d"})
    with api.sessions() as db:  # queued ten minutes ago, and due since
        platform = PlatformScope(db)
        platform.execute(update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(minutes=10)))
        platform.commit()
    receiver.hold = 1
    began = utcnow() - timedelta(minutes=5)
    first = threading.Thread(target=deliver.deliver_due, args=(api.sessions,),
                             kwargs={"allow_private": True, "now": began})
    first.start()
    try:
        assert receiver.received.get(timeout=WAIT).headers["X-VoxFleet-Delivery"] == str(key)
        assert deliver.deliver_due(api.sessions, allow_private=True) == 0  # a second worker, now
    finally:
        receiver.released.set()
        first.join(WAIT)
    assert receiver.keys() == [str(key)]
    [row] = api.rows(WebhookDelivery)
    assert (row.status, row.attempts, row.response_code) == ("delivered", 1, 200)


def test_an_answer_trickled_past_the_attempt_time_is_cut_off() -> None:
    """A receiver that sends its answer a line at a time, each well within the read timeout, must not
    hold a worker beyond the attempt's bound (nor past its claim's lease): the attempt ends unanswered,
    to be retried, instead of taking the 200 that comes at the end."""

    class Trickle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for n in range(60):
                    self.wfile.write(f"X-Slow-{n}: yes\r\n".encode())
                    self.wfile.flush()
                    time.sleep(0.1)
                self.wfile.write(b"Content-Length: 2\r\n\r\nok")
            except OSError:
                pass  # the worker hung up, as it should

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        attempt = deliver.post(f"http://127.0.0.1:{server.server_address[1]}/slow", b"{}", {},
                               allow_private=True, timeout=5.0, within=1.0)
    finally:
        server.shutdown()
        server.server_close()
    assert (attempt.status, attempt.ok, attempt.error) == (None, False, "no complete answer within 1 s")
