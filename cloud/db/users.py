"""People who log in: operators (no tenant) and tenant users.

``password_hash`` is Argon2, or empty for people who log in through a tenant's Keycloak, or who
have not yet followed their invite link.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, JsonDict, TenantLinked, enum_check

ROLES = ("platform_admin", "tenant_owner", "tenant_admin", "tenant_member")


class User(TenantLinked, CreatedMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(enum_check("role", ROLES), name="role"),
        # Operators have no tenant; everybody else has one.
        CheckConstraint("(role = 'platform_admin') = (tenant_id IS NULL)", name="role_tenant"),
    )

    # Stored lower-cased, so uniqueness ignores case on both databases.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    # The subject of the tenant's Keycloak token, for people who log in there.
    external_subject: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    last_login_at: Mapped[datetime | None]
    # Personal notification preferences ({key: bool}); None until the person chooses.
    preferences: Mapped[JsonDict | None]
    # Counted in the session fingerprint and bumped when the account is disabled, so re-enabling it
    # does not bring back a session cookie from before.
    session_epoch: Mapped[int] = mapped_column(default=0)
