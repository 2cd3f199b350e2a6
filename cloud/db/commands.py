"""Commands sent down to a device (announce, end session, bus tap, ...) and their outcome."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, JsonDict, TenantOwned, enum_check

COMMAND_STATUSES = ("pending", "sent", "ok", "error", "rejected")


class Command(TenantOwned, CreatedMixin, Base):
    __tablename__ = "commands"
    __table_args__ = (
        CheckConstraint(enum_check("status", COMMAND_STATUSES), name="status"),
        Index("ix_commands_device_id_created_at", "device_id", "created_at"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    # The id the device echoes in its result message.
    command_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    action: Mapped[str] = mapped_column(String(64))
    args: Mapped[JsonDict]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    detail: Mapped[str | None] = mapped_column(String(2000))
    result: Mapped[JsonDict | None]
    created_by: Mapped[str] = mapped_column(String(200))
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
