"""Usage analytics: sessions, speech-to-text seconds, TTS characters and intents per period (last 24 h by
hour, 7 or 30 days by day, or a custom range), by device or project, with a CSV export of the same
figures. The sums are the ones GET /api/v1/usage reports (cloud.domain.usage.aggregate)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, render_template, request
from sqlalchemy import func, select

from cloud.db import VoiceSession
from cloud.db.usage import METERS
from cloud.domain.usage import aggregate
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import names, parse_when

RANGES = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom range"}
GROUPS = {"": "Whole organisation", "device": "By device", "project": "By project"}
CHARTS = (
    ("sessions", "Sessions"),
    ("stt_seconds", "Speech-to-text seconds"),
    ("tts_characters", "TTS characters"),
    ("intents_handled", "Intents handled"),
)
MAX_CUSTOM = timedelta(days=366)


def read_range(args: Any) -> tuple[dict[str, str], dict[str, str], dict[str, Any] | None]:
    """The form's choices, errors beside fields, and (when valid) start, end and bucket size."""
    form = {
        "range": args.get("range", "7d"),
        "from": args.get("from", ""),
        "to": args.get("to", ""),
        "group_by": args.get("group_by", ""),
    }
    errors: dict[str, str] = {}
    if form["range"] not in RANGES:
        errors["range"] = "Choose a range from the list."
    if form["group_by"] not in GROUPS:
        errors["group_by"] = "Choose from the list."
    now = datetime.now(UTC)
    if errors:
        return form, errors, None
    if form["range"] == "24h":
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return form, errors, {"start": end - timedelta(hours=24), "end": end, "period": "hour"}
    if form["range"] in ("7d", "30d"):
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        days = 7 if form["range"] == "7d" else 30
        return form, errors, {"start": end - timedelta(days=days), "end": end, "period": "day"}
    start = end = None
    try:
        start = parse_when(form["from"])
        if start is None:
            errors["from"] = "Give the first day."
    except ValueError:
        errors["from"] = "Use a date like 2026-11-01."
    try:
        end = parse_when(form["to"])
        if end is None:
            errors["to"] = "Give the last day."
    except ValueError:
        errors["to"] = "Use a date like 2026-11-30."
    if start and end:
        end = end + timedelta(days=1) if len(form["to"]) <= 10 else end  # a date means "to the end of it"
        if start >= end:
            errors["to"] = "The last day must not be before the first."
        elif end - start > MAX_CUSTOM:
            errors["to"] = "A range may span at most a year."
    if errors:
        return form, errors, None
    return form, errors, {"start": start, "end": end, "period": "day"}


def buckets(start: datetime, end: datetime, period: str) -> list[tuple[str, datetime]]:
    """Every bucket label in the range (the database returns only those with data), with its start."""
    step = timedelta(hours=1) if period == "hour" else timedelta(days=1)
    fmt = "%Y-%m-%dT%H:00" if period == "hour" else "%Y-%m-%d"
    at = (
        start.replace(minute=0, second=0, microsecond=0)
        if period == "hour"
        else start.replace(hour=0, minute=0, second=0, microsecond=0)
    )
    out = []
    while at < end:
        out.append((at.strftime(fmt), at))
        at += step
    return out


def top_intents(start: datetime, end: datetime, limit: int = 10) -> list[tuple[str, int]]:
    current = scope()
    rows = current.execute(
        select(VoiceSession.intent_skill, VoiceSession.intent_name, func.count())
        .where(
            current.criterion(VoiceSession),
            VoiceSession.started_at >= start,
            VoiceSession.started_at < end,
            VoiceSession.intent_name.is_not(None),
        )
        .group_by(VoiceSession.intent_skill, VoiceSession.intent_name)
        .order_by(func.count().desc(), VoiceSession.intent_name)
        .limit(limit)
    ).all()
    return [(f"{skill}:{name}" if skill else name, n) for skill, name, n in rows]


def _cell(value: Any) -> Any:
    """Keep a spreadsheet from reading a device's name as a formula (CSV injection)."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _label(group: str, key: Any, device_names: dict, project_names: dict) -> str:
    if key is None:
        return "(no project)" if group == "project" else "—"
    key = key if isinstance(key, uuid.UUID) else uuid.UUID(str(key))
    return (device_names if group == "device" else project_names).get(key, str(key))


@bp.get("/usage")
@allow(*TENANT_ADMINS)
def usage():
    form, errors, span = read_range(request.args)
    context: dict[str, Any] = {
        "form": form,
        "errors": errors,
        "ranges": RANGES,
        "groups": GROUPS,
        "charts": CHARTS,
        "span": span,
    }
    if span is None:
        return render_template("tenant/usage.html", **context), 400
    group = form["group_by"] or None
    overall, totals = aggregate(scope(), span["start"], span["end"], span["period"], None)
    by_period = {r["period"]: r for r in overall}
    series = {"x": [], **{key: [] for key, _ in CHARTS}}
    table = []
    for label, at in buckets(span["start"], span["end"], span["period"]):
        row = by_period.get(label, {})
        series["x"].append(int(at.timestamp()))
        for key, _ in CHARTS:
            series[key].append(row.get(key, 0) or 0)
        table.append({"period": label, **{m: row.get(m, 0) or 0 for m in ("sessions", *METERS)}})
    breakdown = []
    if group:
        device_names, project_names = names(scope())
        grouped, _ = aggregate(scope(), span["start"], span["end"], span["period"], group)
        sums: dict[Any, dict[str, float]] = {}
        for r in grouped:
            key = r.get(f"{group}_id")
            target = sums.setdefault(key, {"sessions": 0, **dict.fromkeys(METERS, 0)})
            for m in ("sessions", *METERS):
                target[m] += r[m] or 0
        breakdown = sorted(
            ({"name": _label(group, k, device_names, project_names), **v} for k, v in sums.items()),
            key=lambda r: (-r["sessions"], r["name"]),
        )
    context.update(
        series=series,
        table=table,
        totals=totals,
        breakdown=breakdown,
        group=group,
        intents=top_intents(span["start"], span["end"]),
    )
    return render_template("tenant/usage.html", **context)


@bp.get("/usage.csv")
@allow(*TENANT_ADMINS)
def usage_csv():
    """The same figures as the page, one row per period (and device or project when grouped)."""
    form, errors, span = read_range(request.args)
    if span is None:
        return Response("; ".join(f"{k}: {v}" for k, v in errors.items()) + "\n", 400, mimetype="text/plain")
    group = form["group_by"] or None
    rows, _ = aggregate(scope(), span["start"], span["end"], span["period"], group)
    device_names, project_names = names(scope()) if group else ({}, {})
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["period"] + ([f"{group}_id", f"{group}_name"] if group else []) + ["sessions", *METERS]
    writer.writerow(head)
    for r in rows:
        key = r.get(f"{group}_id") if group else None
        ident = [str(key) if key else "", _label(group, key, device_names, project_names)] if group else []
        writer.writerow([r["period"], *(_cell(v) for v in ident), r["sessions"], *(r[m] for m in METERS)])
    stamp = f"{span['start']:%Y%m%d}-{(span['end'] - timedelta(seconds=1)):%Y%m%d}"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="voxfleet-usage-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
