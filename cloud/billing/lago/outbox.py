"""The Lago event outbox: usage rows in, Lago batches out, nothing lost and nothing sent twice.

In: ``enqueue`` turns each usage row of a tenant into its Lago events (cloud/billing/lago/metrics.py)
once. A usage row is queued when no outbox row names its event id yet, and the insert skips any row
whose (tenant, transaction id) already exists, so two syncers racing queue it once.

Out: ``drain`` sends a tenant's pending events in batches of at most 100 (Lago's limit), oldest
first, and marks them only from Lago's answer:

- 200: every event of the batch is ``sent``.
- 422 with per-event ``error_details``: Lago stored none of the batch. An event whose only error is
  ``transaction_id: value_already_exist`` is already in Lago (an earlier try whose answer was lost):
  ``sent``. An event with any other error is ``rejected`` with Lago's words. The events without an
  error stay ``pending`` and go in the next batch, at once.
- another 4xx without per-event details: the batch is split until the refused event is alone, which
  is then ``rejected``; the others are sent.
- 5xx, 429, a timeout, no connection (LagoUnavailable): nothing changes but the batch's attempt count,
  its reason and the time of its next try (exponential backoff); draining stops for this sync.
- 401/403 (LagoAuthError): nothing changes at all; the sync stops with the error.

Each batch's outcome is committed before the next batch is sent, so a syncer that dies at any point
leaves at worst events that Lago has and we still hold as pending; their next send is a 422
``value_already_exist``, which counts as sent. Timestamps are the usage's own time (the meter's
effective time: the device's, unless its clock was not to be trusted, see cloud/billing/meter.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from cloud.billing.lago.client import MAX_BATCH, LagoGateway, LagoRefused, LagoUnavailable
from cloud.billing.lago.metrics import events_for, transaction_id
from cloud.billing.meter import effective_ts
from cloud.db.devices import Device
from cloud.db.lago import LagoEvent
from cloud.db.usage import UsageRecord
from cloud.scoping import TenantScope

log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 1000
BACKOFF_FIRST_S = 30
BACKOFF_MAX_S = 3600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to an hour between tries of a batch Lago could not take."""
    return timedelta(seconds=min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1)))


def lago_timestamp(moment: datetime) -> str:
    """Unix seconds with microseconds, as text: exact (a float would round the microseconds)."""
    delta = moment.astimezone(UTC) - EPOCH
    return f"{delta.days * 86400 + delta.seconds}.{delta.microseconds:06d}"


def enqueue(db: Session, tenant_id: uuid.UUID, external_subscription_id: str,
            since: datetime | None = None, until: datetime | None = None) -> int:
    """Queue for the Lago subscription the events of every usage row of the tenant not queued yet whose
    effective time is in ``[since, until)`` (its billing window, cloud/billing/lago/customers.py; None:
    unbounded); returns events queued."""
    scope = TenantScope(db, tenant_id)
    dialect = db.get_bind().dialect.name
    at = effective_ts(dialect)
    queued = exists().where(LagoEvent.tenant_id == tenant_id, LagoEvent.event_id == UsageRecord.event_id)
    window = [at >= since] if since is not None else []
    if until is not None:
        window.append(at < until)
    columns = (UsageRecord.event_id, UsageRecord.device_id, at.label("at"),
               UsageRecord.stt_seconds, UsageRecord.tts_characters, UsageRecord.intents_handled,
               UsageRecord.llm_tokens)
    total = 0
    while True:
        rows = scope.execute(
            select(*columns).select_from(UsageRecord).join(Device, Device.id == UsageRecord.device_id)
            .where(UsageRecord.tenant_id == tenant_id, ~queued, *window)
            .order_by(UsageRecord.received_at, UsageRecord.id).limit(ENQUEUE_CHUNK)).mappings().all()
        if not rows:
            return total
        events = [{"event_id": row["event_id"], "transaction_id": transaction_id(row["event_id"], code),
                   "external_subscription_id": external_subscription_id, "code": code,
                   "timestamp": row["at"], "properties": properties, "status": "pending", "attempts": 0}
                  for row in rows for code, properties in events_for(dict(row))]
        total += scope.insert_rows(LagoEvent, events, ignore_duplicates=True)
        db.commit()
        if len(rows) < ENQUEUE_CHUNK:
            return total


@dataclass
class Drained:
    sent: int = 0
    duplicates: int = 0        # already in Lago (value_already_exist): counted as sent
    rejected: int = 0
    deferred: str | None = None  # why draining stopped early (Lago unavailable)
    rejections: list[str] = field(default_factory=list)


def _payload(row: LagoEvent) -> dict[str, Any]:
    return {"transaction_id": row.transaction_id, "external_subscription_id": row.external_subscription_id,
            "code": row.code, "timestamp": lago_timestamp(row.timestamp), "properties": dict(row.properties)}


def _per_event(details: Any, size: int) -> dict[int, Any] | None:
    """Lago's batch error_details, keyed by event index ("0", "1", ...); None if not in that shape."""
    if not isinstance(details, Mapping) or not details:
        return None
    found: dict[int, Any] = {}
    for key, errors in details.items():
        if not str(key).isdigit() or int(key) >= size:
            return None
        found[int(key)] = errors
    return found


def _already_present(errors: Any) -> bool:
    return (isinstance(errors, Mapping) and set(errors) == {"transaction_id"}
            and list(errors["transaction_id"]) == ["value_already_exist"])


def _reason(errors: Any) -> str:
    return json.dumps(errors, sort_keys=True, default=str)[:1000]


class _Drain:
    def __init__(self, db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime) -> None:
        self.scope = TenantScope(db, tenant_id)
        self.db, self.gateway, self.now = db, gateway, now
        self.result = Drained()

    def _sent(self, rows: Sequence[LagoEvent], duplicates: bool = False) -> None:
        for row in rows:
            row.status, row.sent_at, row.last_error, row.next_attempt_at = "sent", self.now, None, None
        if duplicates:
            self.result.duplicates += len(rows)
        else:
            self.result.sent += len(rows)

    def _rejected(self, row: LagoEvent, reason: str) -> None:
        row.status, row.last_error, row.next_attempt_at = "rejected", reason[:1000], None
        self.result.rejected += 1
        self.result.rejections.append(f"{row.transaction_id}: {reason}")
        log.error("Lago rejected event %s (%s): %s", row.transaction_id, row.code, reason)

    def send(self, rows: list[LagoEvent]) -> None:
        """Send rows as one batch and record Lago's answer (commits); LagoUnavailable propagates."""
        try:
            self.gateway.send_events([_payload(row) for row in rows])
        except LagoUnavailable as exc:
            for row in rows:
                row.attempts += 1
                row.last_error = str(exc)[:1000]
                row.next_attempt_at = self.now + backoff(row.attempts)
            self.scope.commit()
            raise
        except LagoRefused as exc:
            per_event = _per_event(exc.details, len(rows))
            if per_event is not None:
                for index, row in enumerate(rows):
                    errors = per_event.get(index)
                    if errors is None:
                        continue  # Lago stored nothing of the batch: sent again in the next batch
                    if _already_present(errors):
                        self._sent([row], duplicates=True)
                    else:
                        self._rejected(row, f"{exc} {_reason(errors)}")
                self.scope.commit()
                return
            if len(rows) == 1:
                self._rejected(rows[0], f"{exc}" + (f" {_reason(exc.details)}" if exc.details else ""))
                self.scope.commit()
                return
            middle = len(rows) // 2  # find the refused event(s): the halves are sent on their own
            self.send(rows[:middle])
            self.send(rows[middle:])
            return
        self._sent(rows)
        self.scope.commit()


def drain(db: Session, gateway: LagoGateway, tenant_id: uuid.UUID, now: datetime,
          batch_size: int = MAX_BATCH) -> Drained:
    """Send the tenant's due pending events (see the module docstring for what each answer does)."""
    if not 0 < batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
    work = _Drain(db, gateway, tenant_id, now)
    due = or_(LagoEvent.next_attempt_at.is_(None), LagoEvent.next_attempt_at <= now)
    while True:
        rows = work.scope.all(LagoEvent, LagoEvent.status == "pending", due,
                              order_by=[LagoEvent.timestamp, LagoEvent.id], limit=batch_size)
        if not rows:
            return work.result
        try:
            work.send(rows)
        except LagoUnavailable as exc:
            work.result.deferred = str(exc)
            log.warning("Lago sync of tenant %s deferred: %s; %d event(s) stay queued, next try after %s",
                        tenant_id, exc, len(rows), rows[0].next_attempt_at.isoformat()
                        if rows[0].next_attempt_at else "now")
            return work.result


def pending_count(db: Session, tenant_id: uuid.UUID) -> int:
    return TenantScope(db, tenant_id).count(LagoEvent, LagoEvent.status == "pending")


def rejected(db: Session, tenant_id: uuid.UUID, limit: int = 100) -> list[LagoEvent]:
    """Events Lago refused for good, newest first, with its reason: for the operator to see and act on."""
    return TenantScope(db, tenant_id).all(LagoEvent, LagoEvent.status == "rejected",
                                          order_by=[LagoEvent.created_at.desc()], limit=limit)


def requeue_rejected(db: Session, tenant_id: uuid.UUID) -> int:
    """Send the rejected events again (after the cause was fixed in Lago, e.g. a metric restored).
    Safe: one Lago already has is answered ``value_already_exist`` and counts as sent. Commits."""
    count = TenantScope(db, tenant_id).update(LagoEvent, [LagoEvent.status == "rejected"],
                                              {"status": "pending", "attempts": 0, "next_attempt_at": None})
    db.commit()
    return count
