"""Devices claimed by a tenant, their broker credentials and their heartbeat history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, JsonDict, TenantOwned, enum_check, utcnow

DEVICE_STATUSES = ("paired", "unpaired")
PRESENCES = ("online", "offline")


class Device(TenantOwned, CreatedMixin, Base):
    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint(enum_check("status", DEVICE_STATUSES), name="status"),
        CheckConstraint(enum_check("presence", PRESENCES), name="presence"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"), index=True)
    # The id in the device's MQTT topics (protocol.topics.DEVICE_ID); unique across the platform
    # because topics are.
    device_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="paired")
    presence: Mapped[str] = mapped_column(String(16), default="offline")
    presence_at: Mapped[datetime | None]
    last_heartbeat: Mapped[JsonDict | None]
    last_heartbeat_at: Mapped[datetime | None]
    paired_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    unpaired_at: Mapped[datetime | None]
    # What the device announced it can do (protocol.messages.Capabilities, with its online presence);
    # NULL for a device that never announced (0.1.0): cloud/capabilities.py assumes 0.1.0's then.
    capabilities: Mapped[JsonDict | None]
    capabilities_at: Mapped[datetime | None]


class DeviceCredential(TenantOwned, CreatedMixin, Base):
    """A device's broker login. Only an Argon2 hash of the password is kept; revoked ones stay as history."""

    __tablename__ = "device_credentials"

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None]


class Heartbeat(TenantOwned, Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_device_id_at", "device_id", "at"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    metrics: Mapped[JsonDict]
