"""Voice sessions as a device recorded them, and the raw events they were built from.

An event is stored at most once: ``(device_id, event_id)`` is unique, so a redelivered MQTT
message changes nothing (docs/design.md, "The wire").
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, JsonDict, TenantOwned, enum_check, utcnow
from protocol import messages

# How an exchange ended, as the device reports it (protocol/messages.py, session.ended).
END_STATES = messages.END_STATES


class VoiceSession(TenantOwned, Base):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("device_id", "session_key"),
        Index("ix_sessions_device_id_started_at", "device_id", "started_at"),
        Index("ix_sessions_tenant_id_started_at", "tenant_id", "started_at"),
        # The operator dashboard (sessions today/this month, failure rate across tenants) and
        # session lists filtered by outcome (bench/portal.py).
        Index("ix_sessions_started_at_end_state", "started_at", "end_state"),
        Index("ix_sessions_tenant_id_end_state_started_at", "tenant_id", "end_state", "started_at"),
        CheckConstraint(f"end_state IS NULL OR {enum_check('end_state', END_STATES)}", name="end_state"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    # The project the device was in when the session happened (devices can move).
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"),
                                                          index=True)
    # The device's own session id (OVOS context.session.session_id).
    session_key: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    wake_word: Mapped[str | None] = mapped_column(String(64))
    transcript: Mapped[str | None] = mapped_column(Text)
    intent_skill: Mapped[str | None] = mapped_column(String(200))
    intent_name: Mapped[str | None] = mapped_column(String(200))
    # Which stage of the device's pipeline matched and how sure it was (0-1): from 0.2.0 devices.
    intent_stage: Mapped[str | None] = mapped_column(String(64))
    intent_confidence: Mapped[float | None]
    answer: Mapped[str | None] = mapped_column(Text)
    end_state: Mapped[str | None] = mapped_column(String(32))
    timings: Mapped[JsonDict | None]


class SessionEvent(TenantOwned, Base):
    __tablename__ = "session_events"
    __table_args__ = (
        UniqueConstraint("device_id", "event_id"),
        Index("ix_session_events_device_id_seq", "device_id", "seq"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"),
                                                          index=True)
    event_id: Mapped[uuid.UUID]
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[JsonDict]
