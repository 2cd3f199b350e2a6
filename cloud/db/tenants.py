"""Tenants (the customers of the SaaS) and their projects (groups of devices within a tenant)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, CreatedMixin, IdMixin, JsonDict, TenantOwned, enum_check

TENANT_STATUSES = ("active", "suspended")


class Tenant(IdMixin, CreatedMixin, Base):
    __tablename__ = "tenants"
    __tenancy__ = "tenant"
    __table_args__ = (CheckConstraint(enum_check("status", TENANT_STATUSES), name="status"),)

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    suspended_at: Mapped[datetime | None]
    # Organisation settings the tenant portal edits (notification preferences, ...).
    settings: Mapped[JsonDict | None]


class Project(TenantOwned, CreatedMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    is_default: Mapped[bool] = mapped_column(default=False)
