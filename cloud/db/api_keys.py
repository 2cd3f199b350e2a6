"""Tenant API keys. The key is shown once; only its prefix (for lookup) and a SHA-256 hash are kept.

SHA-256 rather than Argon2: keys are 256-bit random strings, so a slow hash adds nothing against
guessing but would cost every API request tens of milliseconds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, TenantOwned, enum_check

SCOPES = ("read", "write")


class ApiKey(TenantOwned, CreatedMixin, Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(enum_check("scope", SCOPES), name="scope"),)

    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    revoked_at: Mapped[datetime | None]
    # Set on the old key when it is rotated: both work until then (the overlap window).
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
