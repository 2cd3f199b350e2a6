"""Rows of the Lago adapter (cloud/billing/lago/): the event outbox and what Lago was last told.

``lago_events`` is an outbox: every usage row becomes its Lago events here once (unique on the tenant
and Lago ``transaction_id``, which is derived from our event id), before anything is sent. A row
leaves ``pending`` only when Lago accepted it (``sent``) or refused it for good (``rejected``, with
Lago's reason, shown to the operator); sent rows are kept as the proof that the usage row was queued,
so a usage row is never queued twice. ``lago_customers`` records what Lago holds for a tenant (its
customer and subscriptions), and ``lago_plans`` what Lago was last given for each plan, so a sync only
calls Lago for what changed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, IdMixin, JsonDict, TenantOwned, enum_check

LAGO_EVENT_STATUSES = ("pending", "sent", "rejected")


class LagoEvent(TenantOwned, CreatedMixin, Base):
    """One Lago event waiting to be sent, sent, or rejected by Lago."""

    __tablename__ = "lago_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "transaction_id"),
        CheckConstraint(enum_check("status", LAGO_EVENT_STATUSES), name="status"),
        Index("ix_lago_events_tenant_id_status", "tenant_id", "status"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(index=True)   # the usage event it came from
    transaction_id: Mapped[str] = mapped_column(String(100))
    external_subscription_id: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(64))             # the billable metric
    timestamp: Mapped[datetime]                               # when the usage happened
    properties: Mapped[JsonDict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[datetime | None]


class LagoCustomer(TenantOwned, CreatedMixin, Base):
    """What Lago holds for one tenant: ``state`` is ``{"customer": {...}, "subscriptions": {external_id:
    {"plan_code": ..., "ending_at": ..., "terminated": bool}}}`` as last accepted by Lago."""

    __tablename__ = "lago_customers"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    state: Mapped[JsonDict] = mapped_column(default=dict)
    synced_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))


class LagoPlan(IdMixin, CreatedMixin, Base):
    """What Lago was last given for one of our plans (platform-owned, like the plan): ``payload`` is
    the accepted body of POST/PUT /plans, whose ``code`` is the plan's code in Lago."""

    __tablename__ = "lago_plans"

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), unique=True)
    payload: Mapped[JsonDict] = mapped_column(default=dict)
    synced_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
