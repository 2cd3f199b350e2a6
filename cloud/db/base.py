"""What every table shares: one metadata with stable constraint names, UUIDv7 keys, UTC timestamps.

Constraint names come from a naming convention so Alembic (and SQLite's batch mode, which rebuilds
tables) can find them by name on both databases. Ids are UUIDv7 (time-ordered, so indexes stay
append-mostly) made in Python, so SQLite and PostgreSQL get identical values and no sequences.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, MetaData, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator
from uuid6 import uuid7

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid7()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases.

    SQLite keeps no zone and hands back naive values; PostgreSQL converts to the session's zone.
    Values are normalised to UTC on the way in (naive ones are refused: their zone is a guess) and
    come back aware, in UTC, from either database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give a timezone (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }

    # How the scoping layer treats the table (cloud/scoping.py):
    #   "owned"    every row belongs to one tenant (non-null tenant_id)
    #   "linked"   rows may belong to a tenant or to the platform (nullable tenant_id)
    #   "tenant"   the tenants table itself: a tenant sees its own row
    #   None       platform data, never reachable through a TenantScope
    __tenancy__: ClassVar[str | None] = None


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class CreatedMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Scoped:
    """Marks a table with a ``tenant_id`` column that the scoping layer filters on (cloud/scoping.py)."""


class TenantOwned(Scoped, IdMixin):
    """A row that belongs to exactly one tenant; removed with its tenant."""

    __tenancy__: ClassVar[str | None] = "owned"
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class TenantLinked(Scoped, IdMixin):
    """A row that may belong to a tenant (a tenant's user, a claimed pairing code) or to nobody yet."""

    __tenancy__: ClassVar[str | None] = "linked"
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


def enum_check(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK that keeps a status column to its allowed words, on both databases."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


JsonDict = dict[str, Any]
JsonList = list[Any]
__all__ = ["JSON", "Base", "CreatedMixin", "IdMixin", "JsonDict", "JsonList", "Scoped", "TenantLinked",
           "TenantOwned", "UTCDateTime", "enum_check", "new_id", "utcnow"]
