"""Usage summaries: the meters summed per day or month, optionally per device or project (the sums are
cloud/domain/usage.py's, shared with the portal's charts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from cloud.api.common import Input, Output, endpoint, parse_query, scope
from cloud.db.usage import METERS
from cloud.domain.usage import aggregate
from cloud.errors import ApiError

MAX_RANGE = timedelta(days=3 * 366)


class UsageQuery(Input):
    period: Literal["day", "month"] = "day"
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    group_by: Literal["device", "project"] | None = None


class UsageTotals(Output):
    sessions: int
    wake_words: int
    stt_seconds: float
    tts_characters: int
    tts_seconds: float
    intents_handled: int
    llm_tokens: int


class UsageRow(UsageTotals):
    period: str = Field(description="YYYY-MM-DD or YYYY-MM, in UTC")
    device_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None


class UsageReport(Output):
    period: str
    group_by: str | None
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    rows: list[UsageRow]
    totals: UsageTotals


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
    ordered, totals = aggregate(scope(), start, to, q.period, q.group_by)
    report = UsageReport(period=q.period, group_by=q.group_by, from_=start, to=to, rows=[],
                         totals=UsageTotals.model_validate(totals))
    return {**report.model_dump(mode="json", by_alias=True), "rows": [row_json(r) for r in ordered]}
