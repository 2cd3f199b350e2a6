"""Webhooks: register URLs for events, see their deliveries, send a test delivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from cloud import services
from cloud.api.common import Input, Output, caller, endpoint, owned, parse_body, parse_query, scope
from cloud.db import Webhook
from cloud.db.webhooks import WEBHOOK_EVENTS
from cloud.domain import webhooks

EventName = Literal["session.completed", "device.online", "device.offline", "usage.threshold"]
MAX_PAGE = 200


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


def _with_secret(row: Webhook) -> dict[str, Any]:
    return {**WebhookOut.dump(row), "secret": row.secret}


@endpoint("GET", "/webhooks", summary="List webhooks (without their secrets)", tag="webhooks",
          response=WebhookList)
def list_webhooks():
    rows = scope().all(Webhook, order_by=[Webhook.created_at, Webhook.id])
    return {"items": [WebhookOut.dump(r) for r in rows]}


@endpoint("POST", "/webhooks",
          summary="Register a webhook; the response holds its signing secret, shown once", tag="webhooks",
          body=WebhookCreate, response=WebhookWithSecret, status=201)
def create_webhook():
    body = parse_body(WebhookCreate)
    row = webhooks.create_webhook(caller(), body.url, body.events, body.description, body.active,
                                  allow_private=services.webhooks_allow_private())
    return _with_secret(row), 201


@endpoint("GET", "/webhooks/<uuid:webhook_id>", summary="One webhook", tag="webhooks", response=WebhookOut,
          errors=(404,))
def get_webhook(webhook_id: uuid.UUID):
    return WebhookOut.dump(owned(Webhook, webhook_id, "webhook"))


@endpoint("PATCH", "/webhooks/<uuid:webhook_id>",
          summary="Change a webhook's URL, events, description or state", tag="webhooks",
          body=WebhookUpdate, response=WebhookOut, errors=(404,))
def update_webhook(webhook_id: uuid.UUID):
    body = parse_body(WebhookUpdate)
    row = owned(Webhook, webhook_id, "webhook")
    return WebhookOut.dump(webhooks.update_webhook(caller(), row, body.model_dump(exclude_none=True),
                                                   allow_private=services.webhooks_allow_private()))


@endpoint("POST", "/webhooks/<uuid:webhook_id>/rotate-secret",
          summary="Replace the signing secret; the new one is shown once", tag="webhooks",
          response=WebhookWithSecret, errors=(404,))
def rotate_webhook_secret(webhook_id: uuid.UUID):
    return _with_secret(webhooks.rotate_webhook_secret(caller(), owned(Webhook, webhook_id, "webhook")))


@endpoint("DELETE", "/webhooks/<uuid:webhook_id>", summary="Delete a webhook and its delivery log",
          tag="webhooks", status=204, errors=(404,))
def delete_webhook(webhook_id: uuid.UUID):
    webhooks.delete_webhook(caller(), owned(Webhook, webhook_id, "webhook"))
    return "", 204


@endpoint("POST", "/webhooks/<uuid:webhook_id>/test",
          summary="Send a signed test delivery now and report the receiver's response code",
          tag="webhooks", response=TestResult, errors=(404,))
def test_webhook(webhook_id: uuid.UUID):
    fresh, attempt = webhooks.send_test_delivery(caller(), owned(Webhook, webhook_id, "webhook"),
                                                 allow_private=services.webhooks_allow_private())
    return {"delivery": DeliveryOut.dump(fresh),
            "response_code": attempt.status, "delivered": attempt.ok}


@endpoint("GET", "/webhooks/<uuid:webhook_id>/deliveries",
          summary="A webhook's deliveries, newest first, with response codes", tag="webhooks",
          query=DeliveryQuery, response=DeliveryList, errors=(404,))
def list_deliveries(webhook_id: uuid.UUID):
    q = parse_query(DeliveryQuery)
    page = webhooks.delivery_page(scope(), owned(Webhook, webhook_id, "webhook"), q.status, q.limit, q.cursor)
    return {"items": [DeliveryOut.dump(r) for r in page.rows],
            "next_cursor": page.next_cursor}
