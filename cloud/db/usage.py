"""Metered usage, one row per usage event from a device; billing sums these columns."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, TenantOwned, utcnow

METERS = ("wake_words", "stt_seconds", "tts_characters", "tts_seconds", "intents_handled", "llm_tokens")


class UsageRecord(TenantOwned, Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("device_id", "event_id"),
        Index("ix_usage_records_tenant_id_ts", "tenant_id", "ts"),
        # The meter's clock-skew rule and the billing scheduler look usage up by when it arrived.
        Index("ix_usage_records_tenant_id_received_at", "tenant_id", "received_at"),
        Index("ix_usage_records_received_at", "received_at"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"),
                                                          index=True)
    # The same id becomes the billing provider's idempotent transaction id.
    event_id: Mapped[uuid.UUID]
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    wake_words: Mapped[int] = mapped_column(default=0)
    stt_seconds: Mapped[float] = mapped_column(default=0.0)
    tts_characters: Mapped[int] = mapped_column(BigInteger, default=0)
    tts_seconds: Mapped[float] = mapped_column(default=0.0)
    intents_handled: Mapped[int] = mapped_column(default=0)
    llm_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
