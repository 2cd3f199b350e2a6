"""Webhooks: register URLs for events, see their deliveries, send a test delivery."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any, Literal

from flask import current_app
from pydantic import Field, field_validator
from sqlalchemy import and_, or_

from cloud.api.common import (
    Input,
    Output,
    audit,
    decode_cursor,
    encode_cursor,
    endpoint,
    not_found,
    parse_body,
    parse_query,
    scope,
)
from cloud.db import Webhook, WebhookDelivery
from cloud.db.base import utcnow
from cloud.db.webhooks import WEBHOOK_EVENTS
from cloud.errors import ApiError
from cloud.webhooks import deliver

EventName = Literal["session.completed", "device.online", "device.offline", "usage.threshold"]
TEST_EVENT = "webhook.test"
MAX_PAGE = 200


def allow_private() -> bool:
    """``WEBHOOKS_ALLOW_PRIVATE`` in the app's config, else the cloud configuration's setting."""
    configured = current_app.config.get("WEBHOOKS_ALLOW_PRIVATE")
    if configured is not None:
        return bool(configured)
    return deliver.allow_private_default(current_app.extensions.get("voxfleet.config"))


def _check_url(url: str) -> str:
    try:
        deliver.check_url(url, allow_private=allow_private())
    except deliver.UnsafeUrl as exc:
        raise ApiError(400, "invalid_request", f"url: {exc}") from None
    return url


class _Events(Input):
    @field_validator("events", check_fields=False)
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted(set(value))


class WebhookCreate(_Events):
    url: str = Field(min_length=8, max_length=2000)
    events: list[EventName] = Field(min_length=1, max_length=len(WEBHOOK_EVENTS))
    description: str = Field(default="", max_length=500)
    active: bool = True


class WebhookUpdate(_Events):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[EventName] | None = Field(default=None, min_length=1, max_length=len(WEBHOOK_EVENTS))
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None


class WebhookOut(Output):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime


class WebhookList(Output):
    items: list[WebhookOut]


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="the signing secret: shown this once, never again")


class DeliveryQuery(Input):
    status: Literal["pending", "delivered", "failed"] | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class DeliveryOut(Output):
    id: uuid.UUID
    event_type: str
    delivery_key: uuid.UUID
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    response_code: int | None
    response_excerpt: str | None
    error: str | None


class DeliveryList(Output):
    items: list[DeliveryOut]
    next_cursor: str | None


class TestResult(Output):
    delivery: DeliveryOut
    response_code: int | None
    delivered: bool


def _out(row: Webhook) -> dict[str, Any]:
    return WebhookOut.model_validate(row).model_dump(mode="json")


def _get(webhook_id: uuid.UUID) -> Webhook:
    row = scope().get(Webhook, webhook_id)
    if row is None:
        raise not_found("webhook")
    return row


def _secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


@endpoint("GET", "/webhooks", summary="List webhooks (without their secrets)", tag="webhooks",
          response=WebhookList)
def list_webhooks():
    return {"items": [_out(r) for r in scope().all(Webhook, order_by=[Webhook.created_at, Webhook.id])]}


@endpoint("POST", "/webhooks",
          summary="Register a webhook; the response holds its signing secret, shown once", tag="webhooks",
          body=WebhookCreate, response=WebhookWithSecret, status=201)
def create_webhook():
    body = parse_body(WebhookCreate)
    row = create(body.url, list(body.events), body.description, body.active)
    return {**_out(row), "secret": row.secret}, 201


def create(url: str, events: list[str], description: str = "", active: bool = True) -> Webhook:
    """Register a webhook with a fresh signing secret and commit (API and portal). ApiError 400 for a
    URL this server will not call."""
    row = scope().add(Webhook(url=_check_url(url), events=sorted(set(events)), secret=_secret(),
                              description=description, active=active))
    scope().flush()
    audit("webhook.create", f"webhook:{row.id}", events=row.events)
    scope().commit()
    return row


def change(row: Webhook, changed: dict[str, Any]) -> Webhook:
    """Apply ``changed`` (url, events, description, active) and commit; ApiError 400 for a bad URL."""
    if "url" in changed:
        row.url = _check_url(changed["url"])
    if "events" in changed:
        row.events = sorted(set(changed["events"]))
    if "description" in changed:
        row.description = changed["description"]
    if "active" in changed:
        row.active = changed["active"]
    audit("webhook.update", f"webhook:{row.id}", fields=sorted(changed))
    scope().commit()
    return row


def send_test(row: Webhook) -> tuple[WebhookDelivery, deliver.Attempt]:
    """Send one signed test delivery now (one attempt, no retries) and log it like any delivery."""
    now = utcnow()
    key = uuid.uuid4()
    body = {"type": TEST_EVENT, "id": str(key), "created_at": now.isoformat(),
            "data": {"webhook_id": str(row.id), "message": "a test delivery from VoxFleet"}}
    delivery = scope().add(WebhookDelivery(webhook_id=row.id, event_type=TEST_EVENT, delivery_key=key,
                                           payload=body, status="pending", attempts=0, next_attempt_at=None))
    scope().flush()
    audit("webhook.test", f"webhook:{row.id}")
    scope().commit()
    # One attempt only: a test is about now, not about retrying for hours.
    attempt = deliver.send(row, delivery, allow_private=allow_private())
    deliver.record(scope(), delivery, attempt, max_attempts=1)
    fresh = scope().get(WebhookDelivery, delivery.id)
    assert fresh is not None
    return fresh, attempt


def delivery_page(row: Webhook, status: str | None, limit: int,
                  cursor: str | None) -> tuple[list[WebhookDelivery], str | None]:
    """A webhook's deliveries, newest first, and the next page's cursor (None on the last)."""
    where: list[Any] = [WebhookDelivery.webhook_id == row.id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    if cursor:
        at, last = decode_cursor(cursor)
        where.append(or_(WebhookDelivery.created_at < at,
                         and_(WebhookDelivery.created_at == at, WebhookDelivery.id < last)))
    rows = scope().all(WebhookDelivery, *where,
                       order_by=[WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()],
                       limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


@endpoint("GET", "/webhooks/<uuid:webhook_id>", summary="One webhook", tag="webhooks", response=WebhookOut,
          errors=(404,))
def get_webhook(webhook_id: uuid.UUID):
    return _out(_get(webhook_id))


@endpoint("PATCH", "/webhooks/<uuid:webhook_id>",
          summary="Change a webhook's URL, events, description or state", tag="webhooks",
          body=WebhookUpdate, response=WebhookOut, errors=(404,))
def update_webhook(webhook_id: uuid.UUID):
    body = parse_body(WebhookUpdate)
    return _out(change(_get(webhook_id), body.model_dump(exclude_none=True)))


@endpoint("POST", "/webhooks/<uuid:webhook_id>/rotate-secret",
          summary="Replace the signing secret; the new one is shown once", tag="webhooks",
          response=WebhookWithSecret, errors=(404,))
def rotate_webhook_secret(webhook_id: uuid.UUID):
    row = _get(webhook_id)
    row.secret = _secret()
    audit("webhook.rotate_secret", f"webhook:{row.id}")
    scope().commit()
    return {**_out(row), "secret": row.secret}


@endpoint("DELETE", "/webhooks/<uuid:webhook_id>", summary="Delete a webhook and its delivery log",
          tag="webhooks", status=204, errors=(404,))
def delete_webhook(webhook_id: uuid.UUID):
    delete(_get(webhook_id))
    return "", 204


def delete(row: Webhook) -> None:
    """Delete a webhook with its delivery log, and commit (API and portal)."""
    audit("webhook.delete", f"webhook:{row.id}", url_host=row.url.split("/")[2] if "//" in row.url else "")
    scope().delete(WebhookDelivery, WebhookDelivery.webhook_id == row.id)
    scope().remove(row)
    scope().commit()


@endpoint("POST", "/webhooks/<uuid:webhook_id>/test",
          summary="Send a signed test delivery now and report the receiver's response code",
          tag="webhooks", response=TestResult, errors=(404,))
def test_webhook(webhook_id: uuid.UUID):
    fresh, attempt = send_test(_get(webhook_id))
    return {"delivery": DeliveryOut.model_validate(fresh).model_dump(mode="json"),
            "response_code": attempt.status, "delivered": attempt.ok}


@endpoint("GET", "/webhooks/<uuid:webhook_id>/deliveries",
          summary="A webhook's deliveries, newest first, with response codes", tag="webhooks",
          query=DeliveryQuery, response=DeliveryList, errors=(404,))
def list_deliveries(webhook_id: uuid.UUID):
    q = parse_query(DeliveryQuery)
    rows, next_cursor = delivery_page(_get(webhook_id), q.status, q.limit, q.cursor)
    return {"items": [DeliveryOut.model_validate(r).model_dump(mode="json") for r in rows],
            "next_cursor": next_cursor}
