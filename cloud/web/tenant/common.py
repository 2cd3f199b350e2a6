"""What the tenant and member portals share: the caller they hand the domain (cloud/domain), reading
ids and times from forms, formatting times, and the queries behind the dashboards."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, g
from sqlalchemy import Row, func, select

from cloud.db import AuditEntry, Device, Project, VoiceSession
from cloud.domain.caller import Caller
from cloud.domain.lookup import get_owned
from cloud.scoping import TenantScope
from cloud.web.access import client_ip, current_user, scope

# End states that mean the device did not do what was asked (the "failed intents" of the dashboard).
FAILED_STATES = ("not_understood", "no_transcript", "error")
OUTCOMES = (
    "answered",
    "handled",
    "not_understood",
    "no_speech",
    "no_transcript",
    "error",
    "cancelled",
    "open",
)


def as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def owned(model: type, id_: Any) -> Any:
    """The signed-in tenant's row with this id, else the 404 page (another tenant's id looks like no id
    at all): cloud.domain.lookup.get_owned, answered by cloud/web/refusals.py."""
    return get_owned(scope(), model, id_)


def caller() -> Caller:
    """The signed-in person as the domain's caller: their tenant, and ``user:<id>`` in the audit log."""
    return Caller(scope(), g.get("actor") or f"user:{current_user().id}", client_ip())


def parse_when(value: str | None) -> datetime | None:
    """A date or date-time typed into a form (``datetime-local`` or ``date``), read as UTC.

    Raises ValueError for text that is neither, so the form can say so beside the field.
    """
    value = (value or "").strip()
    if not value:
        return None
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def fmt_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def fmt_ms(value: Any) -> str:
    if value is None:
        return "—"
    return f"{float(value) / 1000:.2f} s" if float(value) >= 1000 else f"{float(value):.0f} ms"


def register_filters(bp: Blueprint) -> None:
    bp.add_app_template_filter(fmt_time, "when")
    bp.add_app_template_filter(fmt_ms, "ms")


# --- queries the dashboards share ----------------------------------------------------------------------


def choices(current: TenantScope, model: type, order_by: Any) -> list[Row[tuple[uuid.UUID, str]]]:
    """``(id, name)`` of every one of the tenant's devices or projects, in ``order_by`` order.

    Only the two columns are read: a big tenant has thousands of devices, and loading each as a full
    ORM object (heartbeat JSON and all) just to print its name cost hundreds of milliseconds a page.
    The rows have ``.id`` and ``.name`` like the objects, so templates read them the same way."""
    columns = (model.id, model.name)  # type: ignore[attr-defined]
    order = order_by if isinstance(order_by, list | tuple) else [order_by]
    return list(current.execute(select(*columns).where(current.criterion(model)).order_by(*order)).all())


def names(current: TenantScope) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, str]]:
    """Device and project names by id, for lists that show them beside sessions and usage."""
    devices = {d.id: d.name for d in choices(current, Device, Device.name)}
    projects = {p.id: p.name for p in choices(current, Project, Project.name)}
    return devices, projects


def device_names(current: TenantScope, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Names of just these devices (the few a short list shows), instead of every device's name."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    found = current.execute(
        select(Device.id, Device.name).where(current.criterion(Device), Device.id.in_(wanted))
    ).all()
    return {row.id: row.name for row in found}


def dashboard(current: TenantScope) -> dict[str, Any]:
    """The figures of a tenant's dashboard, each one query on indexed columns."""
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    paired = Device.status == "paired"
    top = current.execute(
        select(VoiceSession.intent_skill, VoiceSession.intent_name, func.count().label("n"))
        .where(
            current.criterion(VoiceSession),
            VoiceSession.started_at >= week,
            VoiceSession.intent_name.is_not(None),
        )
        .group_by(VoiceSession.intent_skill, VoiceSession.intent_name)
        .order_by(func.count().desc(), VoiceSession.intent_name)
        .limit(5)
    ).all()
    failed_where = (VoiceSession.started_at >= week, VoiceSession.end_state.in_(FAILED_STATES))
    return {
        "devices_online": current.count(Device, paired, Device.presence == "online"),
        "devices_paired": current.count(Device, paired),
        "sessions_today": current.count(VoiceSession, VoiceSession.started_at >= today),
        "sessions_week": current.count(VoiceSession, VoiceSession.started_at >= week),
        "failed_week": current.count(VoiceSession, *failed_where),
        "top_intents": [{"skill": r[0], "intent": r[1], "count": r[2]} for r in top],
        "failed": current.all(VoiceSession, *failed_where, order_by=VoiceSession.started_at.desc(), limit=5),
        "recent_sessions": current.all(
            VoiceSession, order_by=[VoiceSession.started_at.desc(), VoiceSession.id.desc()], limit=8
        ),
    }


def recent_activity(current: TenantScope, limit: int = 10) -> list[AuditEntry]:
    return current.all(AuditEntry, order_by=[AuditEntry.at.desc(), AuditEntry.id.desc()], limit=limit)
