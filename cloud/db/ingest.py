"""What the ingest workers report about themselves, and per-device ingest counters.

``ingest_workers`` is platform data (no tenant): the operator portal reads it to see whether ingest
keeps up. ``device_ingest`` is a tenant's own: how many detail events each device's outbox had to
drop before they could be sent (reported in every event batch), so a tenant can see which device
lost detail and why its sessions may look incomplete.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, JsonDict, TenantOwned, enum_check, utcnow

WORKER_STATES = ("running", "stopped")


class IngestWorkerStats(Base):
    """One row per ingest worker (its stable MQTT client id), rewritten every few seconds."""

    __tablename__ = "ingest_workers"
    __table_args__ = (CheckConstraint(enum_check("status", WORKER_STATES), name="status"),)

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Counters since the worker started.
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_messages: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_events: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicate_events: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[JsonDict] = mapped_column(default=dict)  # reason -> count
    # Fields devices sent that this release does not know (ignored, not refused): path -> count, such as
    # {"heartbeat.gpu_percent": 120}. A newer device release talking to this cloud; NULL before 0.2.0.
    unknown_fields: Mapped[JsonDict | None]
    tap_frames: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped_reported: Mapped[int] = mapped_column(BigInteger, default=0)
    last_message_at: Mapped[datetime | None]
    # now - newest event timestamp of the last committed batch: how far behind the devices it runs.
    lag_s: Mapped[float | None]


class DeviceIngest(TenantOwned, Base):
    __tablename__ = "device_ingest"

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    events_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
