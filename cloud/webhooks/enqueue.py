"""Record a webhook event for delivery, inside the caller's transaction (an outbox).

Whoever causes an event (ingest storing a finished session, a device going offline, billing crossing
a threshold) calls ``enqueue`` with its own TenantScope before committing: the delivery rows commit
or roll back with the change itself, so no event is announced that did not happen, and none that
happened is forgotten if the process dies before sending. The delivery worker sends them later.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloud.db import Webhook, WebhookDelivery
from cloud.db.base import utcnow
from cloud.db.webhooks import WEBHOOK_EVENTS
from cloud.scoping import TenantScope


def enqueue(scope: TenantScope, event_type: str, payload: dict[str, Any],
            delivery_key: uuid.UUID | None = None) -> int:
    """One pending delivery per active webhook of this tenant subscribed to ``event_type``.

    ``delivery_key`` identifies the event across retries (sent as a header so receivers can drop
    duplicates); derive it from the cause (e.g. uuid5 of the session id) so that re-processing
    the same cause enqueues nothing twice. Returns the number of deliveries recorded.
    """
    if event_type not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event_type!r}; one of {', '.join(WEBHOOK_EVENTS)}")
    key = delivery_key or uuid.uuid4()
    hooks = [h for h in scope.all(Webhook, Webhook.active.is_(True)) if event_type in (h.events or [])]
    if not hooks:
        return 0
    existing = {d.webhook_id for d in scope.all(WebhookDelivery, WebhookDelivery.delivery_key == key)}
    now = utcnow()
    body = {"type": event_type, "id": str(key), "created_at": now.isoformat(), "data": payload}
    added = 0
    for hook in hooks:
        if hook.id in existing:
            continue
        scope.add(WebhookDelivery(webhook_id=hook.id, event_type=event_type, delivery_key=key, payload=body,
                                  status="pending", attempts=0, next_attempt_at=now))
        added += 1
    return added
