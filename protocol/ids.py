"""Event ids: UUIDv7, unique worldwide and ordered by time (the uuid6 package: Python 3.11's uuid
module has no v7), so stores keep their indexes append-mostly and a retry reuses the same id."""

from __future__ import annotations

from uuid import UUID

from uuid6 import uuid7


def new_event_id() -> UUID:
    return uuid7()
