"""Usage summaries: the meters summed per day or month, optionally per device or project."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, Field
from sqlalchemy import func, select

from cloud.api.common import Input, Output, endpoint, parse_query, scope
from cloud.db import UsageRecord, VoiceSession
from cloud.db.usage import METERS
from cloud.errors import ApiError

MAX_RANGE = timedelta(days=3 * 366)


class UsageQuery(Input):
    period: Literal["day", "month"] = "day"
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    group_by: Literal["device", "project"] | None = None


class UsageRow(Output):
    period: str = Field(description="YYYY-MM-DD or YYYY-MM, in UTC")
    device_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    sessions: int
    wake_words: int
    stt_seconds: float
    tts_characters: int
    tts_seconds: float
    intents_handled: int
    llm_tokens: int


class UsageTotals(Output):
    sessions: int
    wake_words: int
    stt_seconds: float
    tts_characters: int
    tts_seconds: float
    intents_handled: int
    llm_tokens: int


class UsageReport(Output):
    period: str
    group_by: str | None
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    rows: list[UsageRow]
    totals: UsageTotals


# Buckets: the API offers day and month; the tenant portal also charts the last 24 hours by hour.
PG_FORMATS = {"hour": 'YYYY-MM-DD"T"HH24:00', "day": "YYYY-MM-DD", "month": "YYYY-MM"}
SQLITE_FORMATS = {"hour": "%Y-%m-%dT%H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}


def _bucket(column: Any, period: str, dialect: str) -> Any:
    """The period a timestamp falls in, as text, computed by the database in UTC."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), PG_FORMATS[period])
    return func.strftime(SQLITE_FORMATS[period], column)


def _range(q: UsageQuery) -> tuple[datetime, datetime]:
    to = (q.to or datetime.now(UTC)).astimezone(UTC)
    if q.from_ is not None:
        start = q.from_.astimezone(UTC)
    elif q.period == "day":
        start = (to - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = (to - timedelta(days=365)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start >= to:
        raise ApiError(400, "invalid_query", "from: must be before to")
    if to - start > MAX_RANGE:
        raise ApiError(400, "invalid_query", "from: the range may span at most 3 years")
    return start, to


def aggregate(start: datetime, to: datetime, period: str, group_by: str | None) -> tuple[list[dict], dict]:
    """Meters and session counts per period (``hour``, ``day`` or ``month``, in UTC) in [start, to),
    optionally per ``device`` or ``project``: the rows (ordered by period, then key) and their totals.
    Shared by GET /usage and the tenant portal's analytics page and CSV export."""
    current = scope()
    dialect = current.db.get_bind().dialect.name
    group = {"device": "device_id", "project": "project_id"}.get(group_by or "")

    meters_bucket = _bucket(UsageRecord.ts, period, dialect).label("period")
    meter_cols = [meters_bucket] + ([getattr(UsageRecord, group).label("key")] if group else [])
    meter_stmt = (select(*meter_cols, *(func.coalesce(func.sum(getattr(UsageRecord, m)), 0).label(m)
                                        for m in METERS))
                  .where(current.criterion(UsageRecord), UsageRecord.ts >= start, UsageRecord.ts < to)
                  .group_by(*meter_cols))
    session_bucket = _bucket(VoiceSession.started_at, period, dialect).label("period")
    session_cols = [session_bucket] + ([getattr(VoiceSession, group).label("key")] if group else [])
    session_stmt = (select(*session_cols, func.count().label("sessions"))
                    .where(current.criterion(VoiceSession), VoiceSession.started_at >= start,
                           VoiceSession.started_at < to)
                    .group_by(*session_cols))

    rows: dict[tuple[str, Any], dict[str, Any]] = {}

    def row_for(period: str, key: Any) -> dict[str, Any]:
        found = rows.get((period, key))
        if found is None:
            found = rows[(period, key)] = {"period": period, "sessions": 0, **dict.fromkeys(METERS, 0)}
            if group:
                found[group] = key
        return found

    for r in current.execute(meter_stmt).mappings():
        target = row_for(r["period"], r["key"] if group else None)
        for meter in METERS:
            target[meter] = r[meter]
    for r in current.execute(session_stmt).mappings():
        row_for(r["period"], r["key"] if group else None)["sessions"] = r["sessions"]

    ordered = sorted(rows.values(), key=lambda r: (r["period"], str(r.get(group or "", ""))))
    totals = {"sessions": sum(r["sessions"] for r in ordered)}
    for meter in METERS:
        totals[meter] = sum(r[meter] for r in ordered)
    return ordered, totals


@endpoint("GET", "/usage",
          summary="Metered usage and session counts per day or month, optionally per device or project",
          tag="usage", query=UsageQuery, response=UsageReport)
def get_usage():
    q = parse_query(UsageQuery)
    start, to = _range(q)
    ordered, totals = aggregate(start, to, q.period, q.group_by)
    report = UsageReport(period=q.period, group_by=q.group_by, from_=start, to=to,
                         rows=[UsageRow.model_validate(r) for r in ordered],
                         totals=UsageTotals.model_validate(totals))
    return report.model_dump(mode="json", by_alias=True)
