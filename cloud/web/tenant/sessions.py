"""Voice sessions: a filtered, paginated list and one session's timeline; owners and admins may end an
active one. The list and timeline are shared with the member portal (read-only there)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from cloud import services
from cloud.db import Device, Project, VoiceSession
from cloud.domain import sessions as domain_sessions
from cloud.domain.errors import DomainError
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.refusals import sentence
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import OUTCOMES, as_uuid, caller, choices, owned, parse_when

PAGE = 25

# Event types of the timeline, in the words a person reads them in.
EVENT_LABELS = {
    "session.started": "Session started",
    "wake_word": "Wake word heard",
    "utterance": "Transcript",
    "intent.matched": "Intent matched",
    "intent.failed": "Not understood",
    "answer.spoken": "Answer spoken",
    "skill.error": "Skill error",
    "usage": "Usage recorded",
    "session.ended": "Session ended",
}


def event_detail(event: Any) -> str:
    """The one thing worth reading in an event, as text."""
    data = event.payload or {}
    if event.type == "wake_word":
        return str(data.get("wake_word") or "")
    if event.type == "utterance":
        stt = data.get("stt_seconds")
        return f"“{data.get('transcript', '')}”" + (f" (speech to text {float(stt):.2f} s)" if stt else "")
    if event.type == "intent.matched":
        return f"{data.get('skill_id', '')}:{data.get('intent', '')}"
    if event.type == "intent.failed":
        return f"“{data.get('utterance', '')}”"
    if event.type == "answer.spoken":
        return f"“{data.get('text', '')}”"
    if event.type == "skill.error":
        return f"{data.get('skill_id') or 'a skill'}: {data.get('error', '')}"
    if event.type == "session.ended":
        return str(data.get("end_state") or "").replace("_", " ")
    if event.type == "usage":
        return ", ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in sorted(data.items())
            if k not in ("type", "event_id", "seq", "ts", "session_id") and v
        )
    return ""


def session_list(ep: str) -> str:
    """The sessions page for either portal (``ep``: the blueprint whose links the page uses)."""
    current = scope()
    args = request.args
    errors: dict[str, str] = {}
    filters = {k: args.get(k, "").strip() for k in ("device", "project", "from", "to", "intent", "outcome")}
    when: dict[str, Any] = {}
    for key in ("from", "to"):
        try:
            when[key] = parse_when(filters[key])
        except ValueError:
            errors[key] = "Use a date and time like 2026-11-26T09:30."
    if filters["outcome"] and filters["outcome"] not in OUTCOMES:
        errors["outcome"] = "Choose an outcome from the list."
    for key in ("device", "project"):
        if filters[key] and as_uuid(filters[key]) is None:
            errors[key] = "Choose from the list."
    rows: list[VoiceSession] = []
    next_cursor = None
    if not errors:
        where = domain_sessions.session_conditions(
            device_id=as_uuid(filters["device"]),
            project_id=as_uuid(filters["project"]),
            from_=when["from"],
            to=when["to"],
            intent=filters["intent"][:401] or None,
            outcome=filters["outcome"] or None,
        )
        try:
            page = domain_sessions.session_page(current, where, PAGE, args.get("cursor") or None)
        except DomainError:
            errors["cursor"] = "That page link is no longer valid; showing the first page."
            page = domain_sessions.session_page(current, where, PAGE, None)
        rows, next_cursor = page.rows, page.next_cursor
    # The filter dropdowns list every device and project; their names label the rows too, so one
    # two-column query each serves both (not full ORM rows, loaded twice).
    devices = choices(current, Device, [Device.name, Device.id])
    projects = choices(current, Project, Project.name)
    device_names = {d.id: d.name for d in devices}
    project_names = {p.id: p.name for p in projects}
    active = {k: v for k, v in filters.items() if v}
    return render_template(
        "tenant/sessions.html",
        sessions=rows,
        next_cursor=next_cursor,
        filters=filters,
        active=active,
        errors=errors,
        devices=devices,
        projects=projects,
        device_names=device_names,
        project_names=project_names,
        outcomes=OUTCOMES,
        first_page=not args.get("cursor"),
        ep=ep,
    ), (400 if errors and not rows else 200)


def timeline(ep: str, session_id: Any, can_end: bool) -> str:
    row = owned(VoiceSession, session_id)
    current = scope()
    events = domain_sessions.session_events(current, row)
    start = events[0].ts if events else row.started_at
    steps = [
        {
            "event": e,
            "label": EVENT_LABELS.get(e.type, e.type),
            "detail": event_detail(e),
            "offset_ms": (e.ts - start).total_seconds() * 1000,
        }
        for e in events
    ]
    active = domain_sessions.is_open(row)
    return render_template(
        "tenant/session.html",
        session=row,
        steps=steps,
        device=current.get(Device, row.device_id),
        project=current.get(Project, row.project_id) if row.project_id else None,
        timings=row.timings or {},
        active=active,
        can_end=can_end and active,
        ep=ep,
    )


@bp.get("/sessions")
@allow(*TENANT_ADMINS)
def sessions():
    return session_list("tenant")


@bp.get("/sessions/<uuid:session_id>")
@allow(*TENANT_ADMINS)
def session(session_id):
    return timeline("tenant", session_id, can_end=True)


@bp.post("/sessions/<uuid:session_id>/end")
@allow(*TENANT_ADMINS)
def end_session(session_id):
    """Send ``end_session`` through the downlink, as POST /api/v1/sessions/{id}/end does."""
    row = owned(VoiceSession, session_id)
    try:
        command = domain_sessions.end_session(caller(), row, downlink=services.downlink())
    except DomainError as exc:
        flash(f"Could not end the session: {sentence(exc)}", "error")
    else:
        if command.status == "pending":
            flash(
                "The request to end this session is queued: the broker has not confirmed it yet. "
                "It is sent again automatically.",
                "warning",
            )
        else:
            flash("The device was asked to end this session.")
    return redirect(url_for("tenant.session", session_id=session_id))
