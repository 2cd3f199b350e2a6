"""Webhooks a tenant registered, and every delivery attempt with its response.

The signing secret is stored as-is: HMAC-SHA256 signing needs the secret itself, so a hash would
be useless. It is shown to the tenant once at creation and can be rotated; whoever can read this
table can also read every session, so encrypting it with a key kept beside the database would
add ceremony, not protection.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, JsonDict, JsonList, TenantOwned, enum_check

WEBHOOK_EVENTS = ("session.completed", "device.online", "device.offline", "usage.threshold")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class Webhook(TenantOwned, CreatedMixin, Base):
    __tablename__ = "webhooks"

    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[JsonList]
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str] = mapped_column(String(500), default="")


class WebhookDelivery(TenantOwned, CreatedMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(enum_check("status", DELIVERY_STATUSES), name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    # Stable per event, sent as a header so receivers can drop duplicates across retries.
    delivery_key: Mapped[uuid.UUID]
    payload: Mapped[JsonDict]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    response_code: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(2000))
