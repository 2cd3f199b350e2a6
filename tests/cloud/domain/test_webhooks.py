"""cloud.domain.webhooks called directly, on SQLite and PostgreSQL: register with a secret, change,
rotate the secret, a signed test delivery to a real HTTP receiver, the delivery log in pages, delete;
URLs the server will not call and unknown events are refused with nothing stored."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cloud.db import AuditEntry, Webhook, WebhookDelivery
from cloud.domain import webhooks
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from cloud.webhooks import deliver
from tests.cloud.domain.test_fixtures import ACTOR, Rig, rig_fixture  # noqa: F401


class _Receiver(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append({"headers": dict(self.headers), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_register_change_test_and_delete_a_webhook(rig: Rig, receiver: str) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        hook = webhooks.create_webhook(caller, receiver, ["session.completed", "device.offline",
                                                          "session.completed"], allow_private=True)
        first_secret = hook.secret
        assert hook.events == ["device.offline", "session.completed"] and first_secret.startswith("whsec_")
        webhooks.update_webhook(caller, hook, {"events": ["device.online"], "active": False,
                                               "description": "ops"}, allow_private=True)
        assert webhooks.rotate_webhook_secret(caller, hook).secret != first_secret
        delivery, attempt = webhooks.send_test_delivery(caller, hook, allow_private=True)
        assert attempt.ok and attempt.status == 204
        assert (delivery.status, delivery.response_code) == ("delivered", 204)
        assert delivery.event_type == "webhook.test"
        sent = _Receiver.seen[-1]
        timestamp = sent["headers"]["X-VoxFleet-Timestamp"]
        signed = deliver.signature(hook.secret, timestamp, sent["body"])
        assert sent["headers"]["X-VoxFleet-Signature"] == signed
        page = webhooks.delivery_page(caller.scope, hook, None, 10, None)
        assert [d.id for d in page.rows] == [delivery.id] and page.next_cursor is None
        hook_id = hook.id
    [stored] = rig.rows(Webhook)
    assert (stored.events, stored.active, stored.description) == (["device.online"], False, "ops")
    with rig.caller(org) as caller:
        webhooks.delete_webhook(caller, get_owned(caller.scope, Webhook, hook_id))
    assert rig.rows(Webhook) == [] and rig.rows(WebhookDelivery) == []
    actions = sorted(e.action for e in rig.rows(AuditEntry, AuditEntry.actor == ACTOR))
    assert actions == ["webhook.create", "webhook.delete", "webhook.rotate_secret", "webhook.test",
                       "webhook.update"]


def test_urls_the_server_will_not_call_and_unknown_events_are_refused(rig: Rig, receiver: str) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as private:
            webhooks.create_webhook(caller, receiver, ["device.online"], allow_private=False)
        assert (private.value.status, private.value.code) == (400, "invalid_request")
        assert private.value.message.startswith("url: ")
        with pytest.raises(DomainError) as events:
            webhooks.create_webhook(caller, receiver, ["device.exploded"], allow_private=True)
        assert events.value.message.startswith("events: ")
        hook = webhooks.create_webhook(caller, receiver, ["device.online"], allow_private=True)
        with pytest.raises(DomainError) as changed:
            webhooks.update_webhook(caller, hook, {"url": "ftp://example.com/x"}, allow_private=True)
        assert changed.value.message.startswith("url: ")
    [stored] = rig.rows(Webhook)
    assert stored.url == receiver


def test_the_delivery_log_pages_newest_first_without_gaps(rig: Rig, receiver: str) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        hook = webhooks.create_webhook(caller, receiver, ["device.online"], allow_private=True)
        made = [webhooks.send_test_delivery(caller, hook, allow_private=True)[0].id for _ in range(5)]
        seen, cursor = [], None
        while True:
            page = webhooks.delivery_page(caller.scope, hook, "delivered", 2, cursor)
            seen += [d.id for d in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == made[::-1]
        with pytest.raises(DomainError) as bad:
            webhooks.delivery_page(caller.scope, hook, None, 2, "garbage")
        assert (bad.value.status, bad.value.code) == (400, "invalid_cursor")
