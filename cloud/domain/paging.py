"""Pages of rows, newest first, with opaque cursors: one implementation for devices, sessions and
webhook deliveries.

A cursor names the last row of a page by its sort key (timestamp, id), so rows with equal timestamps
are neither skipped nor repeated across pages, and rows added meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, or_

from cloud.db.base import Base
from cloud.domain.errors import DomainError
from cloud.scoping import TenantScope

M = TypeVar("M", bound=Base)


@dataclass(frozen=True)
class Page(Generic[M]):
    rows: list[M]
    next_cursor: str | None   # None on the last page


def encode_cursor(at: datetime, id_: uuid.UUID) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), str(id_)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The sort key a cursor names, or DomainError 400 ``invalid_cursor`` for one this code did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id_ = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(id_)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise DomainError(400, "invalid_cursor", "cursor: not a cursor this API returned") from None


def newest_first(scope: TenantScope, model: type[M], at: Any, where: list[Any], limit: int,
                 cursor: str | None) -> Page[M]:
    """One page of the tenant's ``model`` rows matching ``where``, ordered by ``at`` (a timestamp column)
    then id, newest first, after the row ``cursor`` names."""
    where = list(where)
    if cursor:
        last_at, last_id = decode_cursor(cursor)
        where.append(or_(at < last_at, and_(at == last_at, model.id < last_id)))  # type: ignore[attr-defined]
    rows = scope.all(model, *where, order_by=[at.desc(), model.id.desc()],  # type: ignore[attr-defined]
                     limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return Page(rows, encode_cursor(getattr(last, at.key), last.id) if more and last is not None else None)
