"""What the operator portal reads: platform-wide aggregates and lists, every one through PlatformScope.

Kept apart from the views so each figure is one function with one meaning (and one test), and so
the benchmark (bench/portal.py) can time the same queries the pages run. Nothing here takes a raw
session: a caller hands in the PlatformScope it got from ``cloud.web.access.platform()``, so every
statement runs in the platform scope (on PostgreSQL that is what row-level security lets through;
without it these reads would see no rows at all).

Counting is done by the database (``count(*) FILTER (...)``, ``GROUP BY``), never by loading rows:
a fleet of ten thousand devices and a million sessions must not reach Python to be counted.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import func, or_, select, text

from cloud.db import AuditEntry, Device, IngestWorkerStats, Tenant, UsageRecord, User, VoiceSession, utcnow
from cloud.db.usage import METERS
from cloud.scoping import PlatformScope

# A device sends a heartbeat every 30 s unless told otherwise (device/sync/agent.py,
# VOXFLEET_HEARTBEAT_SECONDS); one older than three intervals means the device or its link is gone.
HEARTBEAT_INTERVAL_S = 30.0
STALE_HEARTBEAT = timedelta(seconds=3 * HEARTBEAT_INTERVAL_S)
# Ingest workers write their counters every 5 s (cloud/ingest/worker.py): six missed writes is a
# worker that died without saying so (a killed process never writes "stopped").
STALE_WORKER = timedelta(seconds=30)
# The failure outcome the dashboard's failed-intent rate counts (protocol/messages.py END_STATES).
FAILED_INTENT = "not_understood"
# Heartbeat "services" (device/stack/supervisor.py names) behind each voice function an operator asks about.
VOICE_SERVICES = (("Wake word", "listener"), ("STT", "listener"), ("TTS", "audio"), ("Skills", "core"))


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), dtime(), tzinfo=UTC)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


@dataclass(frozen=True)
class Page:
    """One page of a list: offset pagination with one row fetched beyond the page to know if more follow
    (no COUNT over a large table just to draw a pager)."""

    items: list[Any]
    number: int
    size: int
    has_next: bool
    total: int | None = None

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.items else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.size + len(self.items)


def _page(platform: PlatformScope, stmt: Any, number: int, size: int, total: int | None = None,
          scalars: bool = True) -> Page:
    number = max(1, number)
    stmt = stmt.limit(size + 1).offset((number - 1) * size)
    rows = platform.scalars(stmt) if scalars else list(platform.execute(stmt).all())
    return Page(rows[:size], number, size, len(rows) > size, total)


# --- dashboard -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestSummary:
    workers_running: int
    workers_stale: int
    workers_stopped: int
    rate_per_s: float | None      # messages/s received, averaged since each live worker started
    lag_s: float | None           # the worst lag among live workers
    rejected: int                 # rejections counted by live workers since they started


@dataclass(frozen=True)
class Dashboard:
    tenants_active: int
    tenants_suspended: int
    devices_online: int
    devices_offline: int
    sessions_today: int
    sessions_month: int
    ended_today: int
    not_understood_today: int
    ingest: IngestSummary

    @property
    def failed_intent_rate(self) -> float | None:
        """Share of today's ended sessions that ended ``not_understood``; None with none ended yet."""
        return self.not_understood_today / self.ended_today if self.ended_today else None


def dashboard(platform: PlatformScope, now: datetime | None = None) -> Dashboard:
    now = now or utcnow()
    tenants = dict(platform.execute(select(Tenant.status, func.count()).group_by(Tenant.status)).all())
    presence = dict(platform.execute(select(Device.presence, func.count())
                                     .where(Device.status == "paired").group_by(Device.presence)).all())
    today = day_start(now)
    ended = VoiceSession.end_state.is_not(None) & (VoiceSession.end_state != "open")
    row = platform.execute(
        select(func.count(),
               func.count().filter(VoiceSession.started_at >= today),
               func.count().filter(VoiceSession.started_at >= today, ended),
               func.count().filter(VoiceSession.started_at >= today, VoiceSession.end_state == FAILED_INTENT))
        .where(VoiceSession.started_at >= month_start(now))).one()
    return Dashboard(
        tenants_active=tenants.get("active", 0), tenants_suspended=tenants.get("suspended", 0),
        devices_online=presence.get("online", 0), devices_offline=presence.get("offline", 0),
        sessions_month=row[0], sessions_today=row[1], ended_today=row[2], not_understood_today=row[3],
        ingest=ingest_summary(ingest_workers(platform, now)),
    )


# --- ingest workers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerView:
    row: IngestWorkerStats
    state: str                    # running, stale (says running, but stopped reporting) or stopped

    @property
    def rate_per_s(self) -> float | None:
        seconds = (self.row.updated_at - self.row.started_at).total_seconds()
        return self.row.received / seconds if seconds > 0 else None

    @property
    def rejected_total(self) -> int:
        return sum(int(v) for v in (self.row.rejected or {}).values())


def ingest_workers(platform: PlatformScope, now: datetime | None = None) -> list[WorkerView]:
    now = now or utcnow()
    views = []
    for row in platform.all(IngestWorkerStats, order_by=IngestWorkerStats.worker_id):
        if row.status != "running":
            state = "stopped"
        elif now - row.updated_at > STALE_WORKER:
            state = "stale"
        else:
            state = "running"
        views.append(WorkerView(row, state))
    return views


def ingest_summary(workers: list[WorkerView]) -> IngestSummary:
    live = [w for w in workers if w.state == "running"]
    rates = [w.rate_per_s for w in live if w.rate_per_s is not None]
    lags = [w.row.lag_s for w in live if w.row.lag_s is not None]
    return IngestSummary(
        workers_running=len(live), workers_stale=sum(w.state == "stale" for w in workers),
        workers_stopped=sum(w.state == "stopped" for w in workers),
        rate_per_s=sum(rates) if rates else None, lag_s=max(lags) if lags else None,
        rejected=sum(w.rejected_total for w in live))


def unknown_fields(workers: list[WorkerView]) -> list[tuple[str, int]]:
    """Fields devices sent that this release does not know (ignored, not refused), summed over the
    workers, most frequent first: a device release newer than the cloud is out there."""
    total: dict[str, int] = {}
    for worker in workers:
        for path, count in (worker.row.unknown_fields or {}).items():
            total[path] = total.get(path, 0) + int(count)
    return sorted(total.items(), key=lambda item: (-item[1], item[0]))


# --- tenants ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TenantRow:
    tenant: Tenant
    devices: int
    online: int
    users: int


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def tenants(platform: PlatformScope, search: str = "", status: str = "", page: int = 1,
            size: int = 25) -> Page:
    where: list[Any] = []
    if search:
        pattern = _like(search)
        where.append(or_(func.lower(Tenant.name).like(pattern, escape="\\"),
                         func.lower(Tenant.slug).like(pattern, escape="\\")))
    if status:
        where.append(Tenant.status == status)
    total = platform.scalar(select(func.count()).select_from(Tenant).where(*where))
    found = _page(platform, platform.select(Tenant, *where).order_by(func.lower(Tenant.name), Tenant.id),
                  page, size, total)
    ids = [t.id for t in found.items]
    devices = {r[0]: (r[1], r[2]) for r in platform.execute(
        select(Device.tenant_id, func.count(), func.count().filter(Device.presence == "online"))
        .where(Device.tenant_id.in_(ids), Device.status == "paired")
        .group_by(Device.tenant_id))} if ids else {}
    users = dict(platform.execute(select(User.tenant_id, func.count()).where(User.tenant_id.in_(ids))
                                  .group_by(User.tenant_id)).all()) if ids else {}
    rows = [TenantRow(t, devices.get(t.id, (0, 0))[0], devices.get(t.id, (0, 0))[1], users.get(t.id, 0))
            for t in found.items]
    return Page(rows, found.number, found.size, found.has_next, total)


@dataclass(frozen=True)
class TenantUsage:
    sessions: int
    meters: dict[str, float]


def tenant_usage(platform: PlatformScope, tenant_id: uuid.UUID, now: datetime | None = None) -> TenantUsage:
    """This calendar month (UTC): sessions started, and every metered column summed."""
    start = month_start(now or utcnow())
    sessions = platform.scalar(select(func.count()).select_from(VoiceSession).where(
        VoiceSession.tenant_id == tenant_id, VoiceSession.started_at >= start))
    sums = platform.execute(select(*(func.coalesce(func.sum(getattr(UsageRecord, m)), 0) for m in METERS))
                            .where(UsageRecord.tenant_id == tenant_id, UsageRecord.ts >= start)).one()
    return TenantUsage(int(sessions or 0), dict(zip(METERS, (float(v) for v in sums), strict=True)))


def tenant_devices(platform: PlatformScope, tenant_id: uuid.UUID, page: int = 1, size: int = 25) -> Page:
    total = platform.scalar(select(func.count()).select_from(Device).where(Device.tenant_id == tenant_id))
    return _page(platform, platform.select(Device, Device.tenant_id == tenant_id)
                 .order_by(Device.name, Device.id), page, size, total)


def tenant_users(platform: PlatformScope, tenant_id: uuid.UUID, limit: int = 100) -> list[User]:
    return platform.all(User, User.tenant_id == tenant_id, order_by=[User.email], limit=limit)


# --- audit log -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditFilter:
    tenant_id: uuid.UUID | None = None
    actor: str | None = None
    action: str | None = None            # exact, or a prefix ending in "." ("tenant.")
    since: date | None = None
    until: date | None = None            # inclusive


def audit_entries(platform: PlatformScope, where: AuditFilter, page: int = 1, size: int = 50) -> Page:
    """Newest first. Read-only by design: the audit log has no edit or delete anywhere."""
    conditions: list[Any] = []
    if where.tenant_id is not None:
        conditions.append(AuditEntry.tenant_id == where.tenant_id)
    if where.actor:
        conditions.append(AuditEntry.actor == where.actor)
    if where.action:
        if where.action.endswith("."):
            conditions.append(AuditEntry.action.like(_like(where.action)[1:], escape="\\"))
        else:
            conditions.append(AuditEntry.action == where.action)
    if where.since is not None:
        conditions.append(AuditEntry.at >= datetime.combine(where.since, dtime(), tzinfo=UTC))
    if where.until is not None:
        end = datetime.combine(where.until + timedelta(days=1), dtime(), tzinfo=UTC)
        conditions.append(AuditEntry.at < end)
    stmt = platform.select(AuditEntry, *conditions).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return _page(platform, stmt, page, size)


def recent_audit(platform: PlatformScope, tenant_id: uuid.UUID, limit: int = 15) -> list[AuditEntry]:
    return platform.all(AuditEntry, AuditEntry.tenant_id == tenant_id,
                        order_by=[AuditEntry.at.desc(), AuditEntry.id.desc()], limit=limit)


def actor_names(platform: PlatformScope, actors: list[str]) -> dict[str, str]:
    """``user:<id>`` actors as the email of that account, for people reading the log."""
    ids = set()
    for actor in actors:
        kind, _, ref = (actor or "").partition(":")
        if kind == "user":
            with contextlib.suppress(ValueError):
                ids.add(uuid.UUID(ref))
    if not ids:
        return {}
    return {f"user:{u.id}": u.email for u in platform.all(User, User.id.in_(ids))}


def tenant_names(platform: PlatformScope, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, Tenant]:
    wanted = {i for i in ids if i is not None}
    return {t.id: t for t in platform.all(Tenant, Tenant.id.in_(wanted))} if wanted else {}


# --- users -----------------------------------------------------------------------------------------

def users(platform: PlatformScope, search: str = "", role: str = "", page: int = 1, size: int = 25) -> Page:
    where: list[Any] = []
    if search:
        pattern = _like(search)
        where.append(or_(func.lower(User.email).like(pattern, escape="\\"),
                         func.lower(User.name).like(pattern, escape="\\")))
    if role:
        where.append(User.role == role)
    total = platform.scalar(select(func.count()).select_from(User).where(*where))
    return _page(platform, platform.select(User, *where).order_by(User.email), page, size, total)


# --- system health ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    summary: str
    latency_ms: float | None = None
    details: dict[str, str] = field(default_factory=dict)


def check_database(platform: PlatformScope) -> Check:
    """A real round trip (``SELECT 1``) on this request's connection, timed."""
    dialect = platform.db.get_bind().dialect.name
    started = time.perf_counter()
    try:
        platform.execute(text("SELECT 1")).scalar_one()
    except Exception as exc:  # any failure is "down"; its class, never its message (it may hold a URL)
        return Check("Database", False, f"{dialect}: not answering ({type(exc).__name__})")
    latency = (time.perf_counter() - started) * 1000
    return Check("Database", True, f"{dialect}: answering", latency)


def check_broker(config: Any, embedded: Any, timeout: float = 2.0) -> Check:
    """The embedded broker's own state, or a TCP connection to an external broker's address."""
    if config.embedded_broker:
        if embedded is None:
            return Check("Broker", False, "embedded broker: not running in this process",
                         details={"port": str(config.mqtt_port)})
        running = bool(embedded.running)
        return Check("Broker", running, "embedded broker: running" if running else "embedded broker: stopped",
                     details={"port": str(embedded.port)})
    url = urlparse(config.broker_url)
    host, port = url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return Check("Broker", False, f"{host}:{port}: unreachable ({exc.strerror or type(exc).__name__})")
    return Check("Broker", True, f"{host}:{port}: reachable", (time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class DeviceHealth:
    device: Device
    tenant: Tenant | None
    stale: bool
    services: dict[str, str]      # voice function label -> state ("missing" when not reported)

    @property
    def problems(self) -> bool:
        return self.stale or any(state != "ready" for state in self.services.values())


def device_health(platform: PlatformScope, stale_only: bool = False, page: int = 1, size: int = 50,
                  now: datetime | None = None) -> tuple[Page, int, int]:
    """Paired devices, longest silent first; and how many are paired and how many stale in all."""
    now = now or utcnow()
    cutoff = now - STALE_HEARTBEAT
    stale_where = or_(Device.last_heartbeat_at.is_(None), Device.last_heartbeat_at < cutoff)
    paired = Device.status == "paired"
    counts = platform.execute(select(func.count(), func.count().filter(stale_where)).where(paired)).one()
    where = [paired, stale_where] if stale_only else [paired]
    stmt = platform.select(Device, *where).order_by(Device.last_heartbeat_at.asc().nulls_first(), Device.id)
    found = _page(platform, stmt, page, size)
    owners = tenant_names(platform, {d.tenant_id for d in found.items})
    rows = []
    for device in found.items:
        reported = (device.last_heartbeat or {}).get("services") or {}
        services = {label: str(reported.get(name, "missing")) for label, name in VOICE_SERVICES}
        stale = device.last_heartbeat_at is None or device.last_heartbeat_at < cutoff
        rows.append(DeviceHealth(device, owners.get(device.tenant_id), stale, services))
    return Page(rows, found.number, found.size, found.has_next), int(counts[0]), int(counts[1])
