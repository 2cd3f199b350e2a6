"""Pairing codes: the short code a device shows, bound to a secret only that device holds.

Before a claim the code belongs to no tenant, so the table is "linked" (nullable ``tenant_id``, the
claiming tenant): the pairing flow itself runs under the platform scope.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, TenantLinked


class PairingCode(TenantLinked, CreatedMixin, Base):
    __tablename__ = "pairing_codes"

    code: Mapped[str] = mapped_column(String(16), unique=True)
    device_key: Mapped[str] = mapped_column(String(64))
    # Argon2 hash of the secret the device polls with.
    secret_hash: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime | None]
    claimed_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    credentials_delivered: Mapped[bool] = mapped_column(default=False)
    delivered_at: Mapped[datetime | None]
