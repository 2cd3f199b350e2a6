"""Writing one cycle of validated messages: every row of every message in ONE transaction.

The caller commits (and only then acknowledges the messages) or rolls back and retries. Devices are
resolved by their topic id through a PlatformScope (the one deliberate cross-tenant read); every
write goes through the device's tenant's TenantScope, so a row can only ever land in the tenant
that owns the topic. Events are stored at most once (unique ``(device_id, event_id)``, inserted
with ``ignore_duplicates``); sessions are recomputed from the stored set of their events, so the
result does not depend on arrival order or on redelivery (cloud/ingest/sessions.py).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloud.db import (
    Command,
    ConfigAck,
    Device,
    DeviceIngest,
    Heartbeat,
    SessionEvent,
    Tenant,
    UsageRecord,
    VoiceSession,
    Webhook,
    new_id,
)
from cloud.db.usage import METERS
from cloud.ingest.sessions import StoredEvent, clean_text, summarize
from cloud.ingest.validate import Accepted, Reason, Rejected
from cloud.scoping import JsonText, PlatformScope, TenantScope
from cloud.webhooks.enqueue import enqueue
from protocol import messages
from protocol.topics import Channel

log = logging.getLogger(__name__)

# Webhook delivery keys are uuid5 of their cause under this namespace: a replayed cause gives the
# same key, and enqueue() records nothing twice.
WEBHOOK_NAMESPACE = uuid.UUID("0b7c6a52-3f7e-4b55-9d0a-6f1f3c1e9a10")


@dataclass
class DeviceRef:
    id: uuid.UUID
    key: str
    tenant_id: uuid.UUID
    project_id: uuid.UUID | None
    name: str
    status: str
    tenant_status: str
    presence: str
    presence_at: datetime | None


@dataclass
class Report:
    """What one cycle did; ``rejected`` maps an index of the cycle's messages to its verdict."""

    rejected: dict[int, Rejected] = field(default_factory=dict)
    stored_events: int = 0
    duplicate_events: int = 0
    dropped_reported: int = 0
    tap_frames: int = 0
    newest_ts: datetime | None = None

    def saw(self, ts: datetime) -> None:
        if self.newest_ts is None or ts > self.newest_ts:
            self.newest_ts = ts


def resolve_devices(db: Session, keys: set[str]) -> dict[str, DeviceRef]:
    """Devices by topic id, with their tenant's status: fresh every cycle, so an unpairing or a
    suspension takes effect at once (one indexed query per cycle)."""
    if not keys:
        return {}
    rows = PlatformScope(db).execute(
        select(Device.id, Device.device_key, Device.tenant_id, Device.project_id, Device.name,
               Device.status, Tenant.status, Device.presence, Device.presence_at)
        .join(Tenant, Tenant.id == Device.tenant_id)
        .where(Device.device_key.in_(sorted(keys)))).all()
    return {row[1]: DeviceRef(*row) for row in rows}


def write_cycle(db: Session, items: list[Accepted], now: datetime) -> Report:
    """Stage every row of ``items`` in the session's transaction; the caller commits."""
    report = Report()
    devices = resolve_devices(db, {a.device_key for a in items})
    by_tenant: dict[uuid.UUID, list[tuple[int, Accepted, DeviceRef]]] = defaultdict(list)
    for index, accepted in enumerate(items):
        ref = devices.get(accepted.device_key)
        if ref is None:
            report.rejected[index] = Rejected(Reason.UNKNOWN_DEVICE, f"no device {accepted.device_key!r}")
        elif ref.status != "paired":
            report.rejected[index] = Rejected(Reason.UNPAIRED_DEVICE, f"device {ref.key!r} is {ref.status}")
        elif ref.tenant_status != "active":
            report.rejected[index] = Rejected(Reason.TENANT_SUSPENDED,
                                              f"device {ref.key!r}: its tenant is {ref.tenant_status}")
        elif accepted.channel is Channel.TAP:
            # Live-viewing frames are not stored (see cloud/ingest/__init__.py): counted, dropped.
            report.tap_frames += 1
        else:
            by_tenant[ref.tenant_id].append((index, accepted, ref))
    # Tenants in one fixed order, in every worker: a worker takes its row locks tenant by tenant, so
    # two workers whose cycles share tenants never wait on each other in a circle (deadlock). What
    # needs no database (rows, ids, JSON, summaries) is made for every tenant before the first lock:
    # another worker waiting for this cycle's session rows waits for the writes only.
    writers = [_TenantWriter(db, tenant_id, now, report, by_tenant[tenant_id])
               for tenant_id in sorted(by_tenant)]
    for writer in writers:
        writer.prepare()
    for writer in writers:
        writer.write()
    return report


@dataclass
class _Prepared:
    """One tenant's event rows of a cycle, made before any lock; ``session_id`` is filled in once
    the session rows are claimed (``keys[i]`` is the session of ``events[i]``, or None)."""

    batches: list[tuple[int, Accepted, DeviceRef]]
    refs: dict[uuid.UUID, DeviceRef]
    events: list[dict[str, Any]]
    keys: list[tuple[uuid.UUID, str] | None]
    usage: list[dict[str, Any]]
    sessions: list[dict[str, Any]]  # a new row for each session of the cycle, in key order
    summaries: dict[tuple[uuid.UUID, str], dict[str, Any]]


class _TenantWriter:
    def __init__(self, db: Session, tenant_id: uuid.UUID, now: datetime, report: Report,
                 items: list[tuple[int, Accepted, DeviceRef]]) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.now = now
        self.report = report
        self.items = items
        self._prepared: _Prepared | None = None
        self._hooks: set[str] | None = None

    def _subscribed(self, event_type: str) -> bool:
        """Whether any active webhook of this tenant wants ``event_type`` (asked once per cycle)."""
        if self._hooks is None:
            self._hooks = {e for hook in self.scope.all(Webhook, Webhook.active.is_(True))
                           for e in (hook.events or [])}
        return event_type in self._hooks

    def _enqueue(self, event_type: str, payload: dict[str, Any], cause: str) -> None:
        if self._subscribed(event_type):
            enqueue(self.scope, event_type, payload, uuid.uuid5(WEBHOOK_NAMESPACE, cause))

    def prepare(self) -> None:
        """This tenant's event, usage and new session rows, without touching the database."""
        batches = [(i, a, r) for i, a, r in self.items if a.channel is Channel.EVENTS]
        if not batches:
            return
        now = self.now
        refs = {ref.id: ref for _, _, ref in batches}
        seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        events: list[dict[str, Any]] = []
        keys: list[tuple[uuid.UUID, str] | None] = []
        usage: list[dict[str, Any]] = []
        # Summaries of this cycle's events read their fields straight from the validated models (the
        # same values their stored JSON holds); the JSON is made once, by pydantic, and stored as is.
        in_cycle: dict[tuple[uuid.UUID, str], list[StoredEvent]] = defaultdict(list)
        for _, accepted, ref in batches:
            for event in accepted.message.events:  # type: ignore[attr-defined]
                self.report.saw(event.ts)
                if (ref.id, event.event_id) in seen:
                    self.report.duplicate_events += 1
                    continue
                seen.add((ref.id, event.event_id))
                key = (ref.id, event.session_id) if event.session_id else None
                if key is not None:
                    in_cycle[key].append(StoredEvent(event.seq, event.type, event.ts, vars(event)))
                keys.append(key)
                events.append({
                    "id": new_id(), "device_id": ref.id, "event_id": event.event_id, "seq": event.seq,
                    "session_id": None, "type": event.type, "ts": event.ts, "received_at": now,
                    "payload": JsonText(event.model_dump_json(exclude_none=True))})
                if event.type == "usage":
                    usage.append({"id": new_id(), "device_id": ref.id, "project_id": ref.project_id,
                                  "event_id": event.event_id, "ts": event.ts, "received_at": now,
                                  **{m: getattr(event, m) for m in METERS}})
        summaries = {key: summarize(in_cycle[key]) for key in sorted(in_cycle)}
        sessions = [{"id": new_id(), "device_id": device_id, "project_id": refs[device_id].project_id,
                     "session_key": session_key, **summary}
                    for (device_id, session_key), summary in summaries.items()]
        self._prepared = _Prepared(batches, refs, events, keys, usage, sessions, summaries)

    def write(self) -> None:
        """Write this tenant's rows, taking its locks (sessions, then devices) in the fixed order."""
        self.scope: TenantScope = TenantScope(self.db, self.tenant_id)
        if self._prepared is not None:
            self._events(self._prepared)
        # Device rows are locked by the updates below: device by device in one fixed order (a stable
        # sort, so one device's messages keep their arrival order), for the same reason as tenants.
        for index, accepted, ref in sorted(self.items, key=lambda item: item[2].id):
            message = accepted.message
            if isinstance(message, messages.Presence):
                self._presence(ref, message)
            elif isinstance(message, messages.Heartbeat):
                self._heartbeat(ref, message)
            elif isinstance(message, messages.ConfigAck):
                self._config_ack(ref, message)
            elif isinstance(message, messages.CommandResult):
                verdict = self._command_result(ref, message)
                if verdict is not None:
                    self.report.rejected[index] = verdict

    # --- events and sessions ---------------------------------------------------------------------

    def _events(self, prepared: _Prepared) -> None:
        scope = self.scope
        self._dropped(prepared.batches)
        sessions, created = self._claim_sessions(prepared)
        for row, key in zip(prepared.events, prepared.keys, strict=True):
            if key is not None:
                row["session_id"] = sessions[key].id
        stored = scope.insert_rows(SessionEvent, prepared.events, ignore_duplicates=True)
        scope.insert_rows(UsageRecord, prepared.usage, ignore_duplicates=True)
        self.report.stored_events += stored
        self.report.duplicate_events += len(prepared.events) - stored
        refs, summaries = prepared.refs, prepared.summaries

        for key in created:
            summary = summaries[key]
            if summary["ended_at"] is not None:
                self._session_completed(refs[key[0]], key[1], sessions[key].id, summary)
        if stored == 0:
            return  # a replay: nothing new, nothing to recompute
        existing = {key: row for key, row in sessions.items() if key not in created}
        if existing:
            self._recompute(existing, refs)

    def _claim_sessions(self, prepared: _Prepared
                        ) -> tuple[dict[tuple[uuid.UUID, str], VoiceSession], set[tuple[uuid.UUID, str]]]:
        """Make sure every session of this cycle has its row, and lock those rows until the commit.

        In two steps, each in one fixed order (the same in every worker), so that two workers holding
        batches of the same sessions take turns instead of deadlocking:
        1. INSERT a row for every session, ON CONFLICT DO NOTHING, sorted by (device, session key),
           summarized from this cycle's events. A row another worker is inserting makes this wait
           for that worker's commit; a committed row is left as it is.
        2. SELECT them all FOR UPDATE, ordered by id: only committed rows (or this cycle's own) can
           be locked here, so step 1's waits and step 2's never form a circle.
        Returns the rows by key and the keys whose row this cycle created (their summary is already
        whole: no event of theirs was stored before).
        """
        if not prepared.sessions:
            return {}, set()
        inserted = self.scope.insert_rows(VoiceSession, prepared.sessions, ignore_duplicates=True)
        mine = {(row["device_id"], row["session_key"]): row["id"] for row in prepared.sessions}
        device_ids = sorted({d for d, _ in mine})
        session_keys = sorted({k for _, k in mine})
        stmt = (self.scope.select(VoiceSession, VoiceSession.device_id.in_(device_ids),
                                  VoiceSession.session_key.in_(session_keys))
                .order_by(VoiceSession.id).with_for_update())
        sessions = {(row.device_id, row.session_key): row for row in self.scope.scalars(stmt)
                    if (row.device_id, row.session_key) in mine}
        created = {key for key, row in sessions.items() if row.id == mine[key]}
        if len(sessions) != len(mine) or len(created) != inserted:
            # A session row deleted meanwhile (its device removed): the transaction cannot go on.
            raise RuntimeError(f"expected {len(mine)} session rows ({inserted} new), found "
                               f"{len(sessions)} ({len(created)} new)")
        return sessions, created

    def _recompute(self, rows: dict[tuple[uuid.UUID, str], VoiceSession],
                   refs: dict[uuid.UUID, DeviceRef]) -> None:
        by_id = {row.id: row for row in rows.values()}
        stored: dict[uuid.UUID, list[StoredEvent]] = defaultdict(list)
        result = self.scope.execute(
            select(SessionEvent.session_id, SessionEvent.seq, SessionEvent.type, SessionEvent.ts,
                   SessionEvent.payload)
            .where(SessionEvent.tenant_id == self.scope.tenant_id, SessionEvent.session_id.in_(list(by_id))))
        for session_id, seq, type_, ts, payload in result:
            stored[session_id].append(StoredEvent(seq, type_, ts, payload))
        for session_id, events in stored.items():
            row = by_id[session_id]
            was_open = row.ended_at is None
            summary = summarize(events)
            for name, value in summary.items():
                if getattr(row, name) != value:
                    setattr(row, name, value)
            if was_open and summary["ended_at"] is not None:
                self._session_completed(refs[row.device_id], row.session_key, row.id, summary)
        self.scope.flush()

    def _session_completed(self, ref: DeviceRef, session_key: str, row_id: uuid.UUID,
                           summary: dict[str, Any]) -> None:
        if not self._subscribed("session.completed"):
            return  # most tenants have no webhook: do not build a payload for nothing
        payload = {
            "session_id": str(row_id), "device_id": str(ref.id), "device_key": ref.key,
            "device_name": ref.name, "session_key": session_key,
            "project_id": str(ref.project_id) if ref.project_id else None,
            "started_at": summary["started_at"].isoformat(), "ended_at": summary["ended_at"].isoformat(),
            "end_state": summary["end_state"], "wake_word": summary["wake_word"],
            "transcript": summary["transcript"], "intent_skill": summary["intent_skill"],
            "intent_name": summary["intent_name"], "answer": summary["answer"],
            "timings_ms": summary["timings"],
        }
        self._enqueue("session.completed", payload, f"session.completed/{ref.id}/{session_key}")

    def _dropped(self, batches: list[tuple[int, Accepted, DeviceRef]]) -> None:
        """Add each batch's ``dropped`` to its device's counter, once: a batch whose events were
        already stored is a redelivery, and its ``dropped`` was counted the first time."""
        reporting = [(a, ref) for _, a, ref in batches if a.message.dropped > 0]  # type: ignore[attr-defined]
        if not reporting:
            return
        ids = {e.event_id for a, _ in reporting for e in a.message.events}  # type: ignore[attr-defined]
        known = set(self.scope.scalars(
            select(SessionEvent.event_id).where(SessionEvent.tenant_id == self.scope.tenant_id,
                                                SessionEvent.device_id.in_({r.id for _, r in reporting}),
                                                SessionEvent.event_id.in_(ids))))
        per_device: dict[uuid.UUID, int] = defaultdict(int)
        for accepted, ref in reporting:
            batch = accepted.message
            ids = {e.event_id for e in batch.events}  # type: ignore[attr-defined]
            if not ids & known:  # neither stored before nor seen earlier in this cycle
                per_device[ref.id] += batch.dropped  # type: ignore[attr-defined]
            known |= ids
        for device_id, dropped in sorted(per_device.items()):  # rows locked in one fixed order
            self.report.dropped_reported += dropped
            where = [DeviceIngest.device_id == device_id]
            add = {"events_dropped": DeviceIngest.events_dropped + dropped, "updated_at": self.now}
            if not self.scope.update(DeviceIngest, where, add) and not self.scope.insert_rows(
                    DeviceIngest, [{"id": new_id(), "device_id": device_id, "events_dropped": dropped,
                                    "updated_at": self.now}], ignore_duplicates=True):
                self.scope.update(DeviceIngest, where, add)  # made by another worker meanwhile

    # --- device state --------------------------------------------------------------------------------

    def _presence(self, ref: DeviceRef, message: messages.Presence) -> None:
        self.report.saw(message.ts)
        if ref.presence_at is not None and message.ts <= ref.presence_at:
            return  # older than what is stored (a retained message replayed, or out of order)
        values: dict = {"presence": message.state, "presence_at": message.ts}
        if message.state == "online":
            # Every "online" says what the device can do now: a device rolled back to 0.1.0 announces
            # nothing, and must from then on be sent only what 0.1.0 reads. ("offline", the Last Will
            # included, says nothing about it: the last announcement stays.)
            caps = message.capabilities
            values |= {"capabilities": caps.model_dump(mode="json") if caps is not None else None,
                       "capabilities_at": message.ts}
        changed = self.scope.update(
            Device, [Device.id == ref.id, or_(Device.presence_at.is_(None), Device.presence_at < message.ts)],
            values)
        if not changed:
            return
        before, ref.presence, ref.presence_at = ref.presence, message.state, message.ts
        if before != message.state:
            event_type = f"device.{message.state}"
            payload = {"device_id": str(ref.id), "device_key": ref.key, "device_name": ref.name,
                       "state": message.state, "at": message.ts.isoformat()}
            self._enqueue(event_type, payload, f"{event_type}/{ref.id}/{message.ts.isoformat()}")

    def _heartbeat(self, ref: DeviceRef, message: messages.Heartbeat) -> None:
        self.report.saw(message.ts)
        metrics = message.model_dump(mode="json", exclude={"v", "kind"}, exclude_none=True)
        self.scope.update(Device, [Device.id == ref.id, or_(Device.last_heartbeat_at.is_(None),
                                                            Device.last_heartbeat_at < message.ts)],
                          {"last_heartbeat": metrics, "last_heartbeat_at": message.ts})
        self.scope.insert_rows(Heartbeat, [{"id": new_id(), "device_id": ref.id, "at": message.ts,
                                            "metrics": metrics}])

    def _config_ack(self, ref: DeviceRef, message: messages.ConfigAck) -> None:
        reason = clean_text(message.reason)
        last = self.scope.all(ConfigAck, ConfigAck.device_id == ref.id,
                              order_by=[ConfigAck.at.desc(), ConfigAck.id.desc()], limit=1)
        this = (message.version, message.status, reason)
        if last and (last[0].acked_version, last[0].status, last[0].reason) == this:
            return  # the device acknowledges again on every reconnect; one row says it
        row = {"id": new_id(), "device_id": ref.id, "acked_version": message.version,
               "status": message.status, "reason": reason, "ignored": message.ignored, "at": self.now}
        self.scope.insert_rows(ConfigAck, [row])

    def _command_result(self, ref: DeviceRef, message: messages.CommandResult) -> Rejected | None:
        changed = self.scope.update(
            Command, [Command.device_id == ref.id, Command.command_id == message.command_id,
                      Command.status.in_(("pending", "sent"))],
            {"status": message.status, "detail": clean_text(message.detail), "finished_at": self.now,
             "result": message.model_dump(mode="json", exclude={"v", "kind"}, exclude_none=True)})
        if changed:
            return None
        if self.scope.first(Command, Command.device_id == ref.id, Command.command_id == message.command_id):
            return None  # already finished: a redelivered result
        return Rejected(Reason.UNKNOWN_COMMAND, f"device {ref.key!r} answered command {message.command_id}, "
                                                "which it was never sent")
