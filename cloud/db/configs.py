"""Desired device configuration (versioned, like a device shadow) and what devices acknowledged."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, JsonDict, JsonList, TenantOwned, enum_check, utcnow

ACK_STATUSES = ("applied", "rejected")


class DesiredConfig(TenantOwned, CreatedMixin, Base):
    __tablename__ = "desired_configs"
    __table_args__ = (UniqueConstraint("device_id", "version"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int]
    config: Mapped[JsonDict]
    # Who asked for it: "user:<id>", "api_key:<prefix>", ...
    created_by: Mapped[str] = mapped_column(String(200))


class ConfigAck(TenantOwned, Base):
    __tablename__ = "config_acks"
    __table_args__ = (CheckConstraint(enum_check("status", ACK_STATUSES), name="status"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    acked_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(2000))
    # Fields of the desired config the device did not know and left alone (protocol ConfigAck.ignored).
    ignored: Mapped[JsonList | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)
