"""Webhooks: URLs a tenant registers for events, each with a signing secret (shown once, when made or
rotated), and the log of their deliveries.

``allow_private``: whether URLs on private or loopback addresses may be called (a setting of the
deployment, cloud.webhooks.deliver.allow_private_default); without it such a URL is refused.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cloud.db import Webhook, WebhookDelivery
from cloud.db.base import utcnow
from cloud.db.webhooks import WEBHOOK_EVENTS
from cloud.domain.caller import Caller
from cloud.domain.errors import DomainError
from cloud.domain.paging import Page, newest_first
from cloud.scoping import TenantScope
from cloud.webhooks import deliver

TEST_EVENT = "webhook.test"
CHANGEABLE = ("url", "events", "description", "active")


def _url(url: str, allow_private: bool) -> str:
    try:
        deliver.check_url(url, allow_private=allow_private)
    except deliver.UnsafeUrl as exc:
        raise DomainError(400, "invalid_request", f"url: {exc}") from None
    return url


def _events(events: Iterable[str]) -> list[str]:
    chosen = sorted(set(events))
    unknown = [e for e in chosen if e not in WEBHOOK_EVENTS]
    if not chosen or unknown:
        raise DomainError(400, "invalid_request", f"events: choose from {', '.join(WEBHOOK_EVENTS)}")
    return chosen


def _secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def create_webhook(caller: Caller, url: str, events: Iterable[str], description: str = "",
                   active: bool = True, *, allow_private: bool) -> Webhook:
    """Register a webhook with a fresh signing secret (``row.secret``), audited, and commit.
    DomainError 400 ``invalid_request`` for a URL this server will not call or an unknown event."""
    scope = caller.scope
    row = scope.add(Webhook(url=_url(url, allow_private), events=_events(events), secret=_secret(),
                            description=description, active=active))
    scope.flush()
    caller.audit("webhook.create", f"webhook:{row.id}", events=row.events)
    scope.commit()
    return row


def update_webhook(caller: Caller, hook: Webhook, changes: Mapping[str, Any], *,
                   allow_private: bool) -> Webhook:
    """Apply ``changes`` (any of url, events, description, active), audited, and commit."""
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise DomainError(400, "invalid_request", f"{sorted(unknown)[0]}: unknown field")
    if "url" in changes:
        hook.url = _url(changes["url"], allow_private)
    if "events" in changes:
        hook.events = _events(changes["events"])
    if "description" in changes:
        hook.description = changes["description"]
    if "active" in changes:
        hook.active = bool(changes["active"])
    caller.audit("webhook.update", f"webhook:{hook.id}", fields=sorted(changes))
    caller.scope.commit()
    return hook


def rotate_webhook_secret(caller: Caller, hook: Webhook) -> Webhook:
    """Replace the signing secret (the new one is ``hook.secret``), audited, and commit."""
    hook.secret = _secret()
    caller.audit("webhook.rotate_secret", f"webhook:{hook.id}")
    caller.scope.commit()
    return hook


def delete_webhook(caller: Caller, hook: Webhook) -> None:
    """Delete a webhook with its delivery log, audited, and commit."""
    scope = caller.scope
    caller.audit("webhook.delete", f"webhook:{hook.id}",
                 url_host=hook.url.split("/")[2] if "//" in hook.url else "")
    scope.delete(WebhookDelivery, WebhookDelivery.webhook_id == hook.id)
    scope.remove(hook)
    scope.commit()


def send_test_delivery(caller: Caller, hook: Webhook, *,
                       allow_private: bool) -> tuple[WebhookDelivery, deliver.Attempt]:
    """Send one signed test delivery now (one attempt: a test is about now, not about retrying for
    hours) and log it like any delivery; returns the logged delivery and the receiver's answer."""
    scope = caller.scope
    now = utcnow()
    key = uuid.uuid4()
    body = {"type": TEST_EVENT, "id": str(key), "created_at": now.isoformat(),
            "data": {"webhook_id": str(hook.id), "message": "a test delivery from VoxFleet"}}
    delivery = scope.add(WebhookDelivery(webhook_id=hook.id, event_type=TEST_EVENT, delivery_key=key,
                                         payload=body, status="pending", attempts=0, next_attempt_at=None))
    scope.flush()
    caller.audit("webhook.test", f"webhook:{hook.id}")
    scope.commit()
    attempt = deliver.send(hook, delivery, allow_private=allow_private)
    deliver.record(scope, delivery, attempt, max_attempts=1)
    fresh = scope.get(WebhookDelivery, delivery.id)
    assert fresh is not None
    return fresh, attempt


def delivery_page(scope: TenantScope, hook: Webhook, status: str | None, limit: int,
                  cursor: str | None) -> Page[WebhookDelivery]:
    """A webhook's deliveries (optionally of one status), newest first."""
    where: list[Any] = [WebhookDelivery.webhook_id == hook.id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    return newest_first(scope, WebhookDelivery, WebhookDelivery.created_at, where, limit, cursor)
