"""Metering: a tenant's usage in a period, as a pure function of the usage events stored.

Exactly once: the ingest stores each usage event at most once (UsageRecord is unique on
``(device_id, event_id)``, the event id the device made), so a redelivered or replayed event is not
a second row. The totals here are aggregates over the distinct stored rows, recomputed from scratch
on every call: no running counter to double-increment, no cursor to lose. A metering run that stops
at any point and starts again (or runs twice at once) gives the same totals, and an event that
arrives late, or before an earlier one, is counted whenever the period is metered after it arrived.

Which period an event counts in: the period of its device timestamp ``ts`` -- unless that timestamp
cannot be trusted (clock skew), in which case the cloud's ``received_at`` is used instead:

- ``ts`` more than 24 hours after ``received_at`` (a device clock in the future: an event cannot
  have been recorded after it was received), or
- ``ts`` before the device was paired (``devices.paired_at``: an unset or reset clock, typically
  1970 or the image's build date).

Both inputs are stored columns, so the rule is itself deterministic. An event arriving after its
period's invoice was made is not added to that (immutable) invoice; it stays in the ledger and in
the period's meter. STT seconds are summed in milliseconds (each event's value rounded to the
millisecond) so that sums are exact integers on both databases whatever order rows come in.

``sessions`` counts voice sessions whose ``started_at`` is in the period (the sessions table is
unique on the device's session key, so a session is counted once). ``active_devices`` counts the
distinct devices with a usage event or a session in the period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Interval, and_, case, cast, func, literal_column, or_, select, type_coerce
from sqlalchemy.orm import Session

from cloud.billing.periods import Period
from cloud.db.base import UTCDateTime
from cloud.db.devices import Device
from cloud.db.usage import UsageRecord
from cloud.db.voice_sessions import VoiceSession
from cloud.scoping import TenantScope

FUTURE_SKEW_HOURS = 24


@dataclass(frozen=True)
class Usage:
    """A tenant's metered totals for one period."""

    tenant_id: uuid.UUID
    period: Period
    events: int = 0
    sessions: int = 0
    active_devices: int = 0
    stt_milliseconds: int = 0
    tts_characters: int = 0
    intents_handled: int = 0
    llm_tokens: int = 0
    wake_words: int = 0

    @property
    def stt_seconds(self) -> Decimal:
        return Decimal(self.stt_milliseconds) / 1000

    def quantity(self, meter: str) -> Decimal:
        """The amount used on one of the plans' meters (cloud.db.billing.BILLING_METERS)."""
        return Decimal(getattr(self, meter))


def _skewed(dialect: str) -> Any:
    """SQL: this usage row's device timestamp is not to be trusted (see the module's docstring)."""
    if dialect == "postgresql":
        future = UsageRecord.ts > UsageRecord.received_at + literal_column(
            f"INTERVAL '{FUTURE_SKEW_HOURS} hours'", Interval())
    else:  # SQLite keeps text; julianday() reads it (fractions of a second included)
        future = (func.julianday(UsageRecord.ts) - func.julianday(UsageRecord.received_at)) \
            > FUTURE_SKEW_HOURS / 24
    before_pairing = and_(Device.paired_at.is_not(None), UsageRecord.ts < Device.paired_at)
    return or_(future, before_pairing)


def effective_ts(dialect: str) -> Any:
    """SQL: the moment a usage row counts at (device time, or received time when skewed)."""
    return type_coerce(case((_skewed(dialect), UsageRecord.received_at), else_=UsageRecord.ts), UTCDateTime())


def _in_period(scope: TenantScope, period: Period) -> list[Any]:
    dialect = scope.db.get_bind().dialect.name
    at = effective_ts(dialect)
    return [
        UsageRecord.tenant_id == scope.tenant_id,
        # The effective time is ts or received_at: this coarse test lets the (tenant_id, ts) index work.
        or_(and_(UsageRecord.ts >= period.start, UsageRecord.ts < period.end),
            and_(UsageRecord.received_at >= period.start, UsageRecord.received_at < period.end)),
        at >= period.start, at < period.end,
    ]


def meter(db: Session, tenant_id: uuid.UUID, period: Period) -> Usage:
    """The tenant's usage in ``period``, recomputed from the stored events."""
    scope = TenantScope(db, tenant_id)
    where = _in_period(scope, period)

    def total(column: Any) -> Any:
        return func.coalesce(func.sum(column), 0)

    stt_ms = cast(func.round(UsageRecord.stt_seconds * 1000), BigInteger)
    sums = [total(c) for c in (stt_ms, UsageRecord.tts_characters, UsageRecord.intents_handled,
                               UsageRecord.llm_tokens, UsageRecord.wake_words)]
    row = scope.execute(
        select(func.count(), *sums).select_from(UsageRecord)
        .join(Device, Device.id == UsageRecord.device_id).where(*where)).one()
    devices = set(scope.execute(select(UsageRecord.device_id).distinct().select_from(UsageRecord)
                                .join(Device, Device.id == UsageRecord.device_id).where(*where)).scalars())
    in_period = (VoiceSession.tenant_id == tenant_id, VoiceSession.started_at >= period.start,
                 VoiceSession.started_at < period.end)
    sessions = scope.count(VoiceSession, *in_period)
    devices |= set(scope.execute(select(VoiceSession.device_id).distinct().where(*in_period)).scalars())
    events, stt, tts, intents, tokens, wakes = (int(v) for v in row)
    return Usage(tenant_id=tenant_id, period=period, events=events, sessions=sessions,
                 active_devices=len(devices), stt_milliseconds=stt, tts_characters=tts,
                 intents_handled=intents, llm_tokens=tokens, wake_words=wakes)
