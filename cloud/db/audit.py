"""The audit log: who did what to which thing, from where. Append-only.

``tenant_id`` is a plain column, not a foreign key: an entry outlives the tenant it names, and
operator actions have none. On PostgreSQL the app role may only SELECT and INSERT here.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, IdMixin, JsonDict, Scoped, utcnow


class AuditEntry(Scoped, IdMixin, Base):
    __tablename__ = "audit_log"
    __tenancy__ = "linked"
    __append_only__ = True
    __table_args__ = (Index("ix_audit_log_tenant_id_at", "tenant_id", "at"),
                      Index("ix_audit_log_at_id", "at", "id"))  # the whole log, newest first

    tenant_id: Mapped[uuid.UUID | None]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[JsonDict | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)
