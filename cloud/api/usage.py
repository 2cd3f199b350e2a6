"""Usage summaries: the meters summed per day or month, optionally per device or project."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, Field
from sqlalchemy import func, literal_column, null, select

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


def _bucket(column: Any, period: str, dialect: str) -> tuple[Any, Any]:
    """The period a timestamp falls in, as text, computed by the database in UTC: what to select, and
    what to group by. PostgreSQL groups by the truncated timestamp and formats once per group (to_char
    on every row cost a third of a by-device query's time)."""
    if dialect == "postgresql":
        # Inlined constants (period is one of PG_FORMATS' keys), not bound parameters: the selected
        # expression must be the grouped one, and two parameters would make them differ.
        truncated = func.date_trunc(literal_column(f"'{period}'"),
                                    func.timezone(literal_column("'UTC'"), column))
        return func.to_char(truncated, PG_FORMATS[period]), truncated
    text = func.strftime(SQLITE_FORMATS[period], column)
    return text, text


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

    meters_bucket, meters_group = _bucket(UsageRecord.ts, period, dialect)
    meter_keys = [getattr(UsageRecord, group)] if group else []
    # Ungrouped, a NULL ``key`` column keeps the rows' shape (period, key, ...) the same.
    no_key = [] if group else [null().label("key")]
    meter_stmt = (select(meters_bucket.label("period"), *(k.label("key") for k in meter_keys), *no_key,
                         *(func.coalesce(func.sum(getattr(UsageRecord, m)), 0).label(m) for m in METERS))
                  .where(current.criterion(UsageRecord), UsageRecord.ts >= start, UsageRecord.ts < to)
                  .group_by(meters_group, *meter_keys))
    session_bucket, session_group = _bucket(VoiceSession.started_at, period, dialect)
    session_keys = [getattr(VoiceSession, group)] if group else []
    session_stmt = (select(session_bucket.label("period"), *(k.label("key") for k in session_keys),
                           *no_key, func.count().label("sessions"))
                    .where(current.criterion(VoiceSession), VoiceSession.started_at >= start,
                           VoiceSession.started_at < to)
                    .group_by(session_group, *session_keys))

    # Merged in one pass over plain tuples: grouped by device, a big tenant's 30 days are ~120,000
    # rows, and dict-style row access plus per-row helpers cost seconds there.
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    empty = {"sessions": 0, **dict.fromkeys(METERS, 0)}
    for period_, key, *sums in current.execute(meter_stmt):
        found = {"period": period_, **empty, **dict(zip(METERS, sums, strict=True))}
        if group:
            found[group] = key
        rows[(period_, key)] = found
    for period_, key, sessions in current.execute(session_stmt):
        found = rows.get((period_, key))
        if found is None:
            found = rows[(period_, key)] = {"period": period_, **empty}
            if group:
                found[group] = key
        found["sessions"] = sessions

    # Ordered by period, then the key as text (a missing project reads "None"), as always; each key's
    # text is made once, not once per row.
    texts = {key: str(key) for _, key in rows}
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0], texts[k[1]]))]
    totals = {"sessions": sum(r["sessions"] for r in ordered)}
    for meter in METERS:
        totals[meter] = sum(r[meter] for r in ordered)
    return ordered, totals


# How UsageRow's fields come out in JSON: the same coercions its validation would make, done directly
# (validating ~120,000 rows one by one took most of a by-device report's time).
_KINDS = {name: f.annotation for name, f in UsageRow.model_fields.items()}
assert {n for n, kind in _KINDS.items() if kind in (int, float)} == {"sessions", *METERS}


def _uuid_text(value: Any) -> str | None:
    return None if value is None else str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """One aggregate row as UsageRow.model_validate(row).model_dump(mode="json") gives it (same keys,
    same order, same types)."""
    out: dict[str, Any] = {}
    for name, kind in _KINDS.items():
        value = row.get(name)
        if kind is int:
            out[name] = value if type(value) is int else int(value)  # PostgreSQL sums bigint as numeric
        elif kind is float:
            out[name] = float(value)
        elif name == "period":
            out[name] = str(value)
        else:
            out[name] = _uuid_text(value)
    return out


@endpoint("GET", "/usage",
          summary="Metered usage and session counts per day or month, optionally per device or project",
          tag="usage", query=UsageQuery, response=UsageReport)
def get_usage():
    q = parse_query(UsageQuery)
    start, to = _range(q)
    ordered, totals = aggregate(start, to, q.period, q.group_by)
    report = UsageReport(period=q.period, group_by=q.group_by, from_=start, to=to, rows=[],
                         totals=UsageTotals.model_validate(totals))
    return {**report.model_dump(mode="json", by_alias=True), "rows": [row_json(r) for r in ordered]}
