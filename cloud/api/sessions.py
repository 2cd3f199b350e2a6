"""Voice sessions: filtered, newest first, with cursor pagination; one with its events; end an active one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

from pydantic import AwareDatetime, Field
from sqlalchemy import and_, or_

from cloud.api.common import (
    Input,
    Output,
    decode_cursor,
    encode_cursor,
    endpoint,
    not_found,
    parse_query,
    scope,
)
from cloud.api.devices import CommandOut, command_out, get_device, issue_command
from cloud.db import Command, SessionEvent, VoiceSession
from cloud.errors import ApiError
from protocol.messages import EndState

MAX_PAGE = 200


class SessionQuery(Input):
    device_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    intent: str | None = Field(default=None, min_length=1, max_length=401,
                               description="an intent name, or skill_id:intent")
    outcome: EndState | None = Field(default=None, description="how the session ended (end_state)")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class SessionOut(Output):
    id: uuid.UUID
    device_id: uuid.UUID
    project_id: uuid.UUID | None
    session_key: str
    started_at: datetime
    ended_at: datetime | None
    wake_word: str | None
    transcript: str | None
    intent_skill: str | None
    intent_name: str | None
    answer: str | None
    end_state: str | None
    timings: dict[str, Any] | None


class SessionList(Output):
    items: list[SessionOut]
    next_cursor: str | None


class EventOut(Output):
    event_id: uuid.UUID
    seq: int
    type: str
    ts: datetime
    payload: dict[str, Any]


class SessionDetail(SessionOut):
    events: list[EventOut]


def _out(row: VoiceSession) -> dict:
    return SessionOut.model_validate(row).model_dump(mode="json")


def _get(session_id: uuid.UUID) -> VoiceSession:
    row = scope().get(VoiceSession, session_id)
    if row is None:
        raise not_found("session")
    return row


def session_conditions(*, device_id: uuid.UUID | None = None, project_id: uuid.UUID | None = None,
                       from_: datetime | None = None, to: datetime | None = None, intent: str | None = None,
                       outcome: str | None = None) -> list[Any]:
    """WHERE clauses for a session filter (API and tenant portal share them). ``intent`` is an intent
    name or ``skill_id:intent``; ``outcome`` an end state."""
    where: list[Any] = []
    if device_id is not None:
        where.append(VoiceSession.device_id == device_id)
    if project_id is not None:
        where.append(VoiceSession.project_id == project_id)
    if from_ is not None:
        where.append(VoiceSession.started_at >= from_)
    if to is not None:
        where.append(VoiceSession.started_at < to)
    if intent is not None:
        skill, sep, name = intent.rpartition(":")
        if sep:
            where.append(and_(VoiceSession.intent_skill == skill, VoiceSession.intent_name == name))
        else:
            where.append(VoiceSession.intent_name == intent)
    if outcome is not None:
        where.append(VoiceSession.end_state == outcome)
    return where


def session_page(where: list[Any], limit: int, cursor: str | None) -> tuple[list[VoiceSession], str | None]:
    """One page of sessions, newest first, and the cursor of the next page (None on the last).
    Raises ApiError 400 ``invalid_cursor`` for a cursor this code did not make."""
    where = list(where)
    if cursor:
        at, last = decode_cursor(cursor)
        where.append(or_(VoiceSession.started_at < at,
                         and_(VoiceSession.started_at == at, VoiceSession.id < last)))
    rows = scope().all(VoiceSession, *where,
                       order_by=[VoiceSession.started_at.desc(), VoiceSession.id.desc()], limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].started_at, rows[-1].id) if more else None)


def session_events(row: VoiceSession) -> list[SessionEvent]:
    return scope().all(SessionEvent, SessionEvent.session_id == row.id,
                       order_by=[SessionEvent.seq, SessionEvent.id])


def end(row: VoiceSession) -> Command:
    """Send ``end_session`` to the session's device (API and portal). ApiError 409 when it has ended
    already or the device is unpaired."""
    if row.ended_at is not None or (row.end_state is not None and row.end_state != "open"):
        raise ApiError(409, "session_ended", "this session has already ended")
    device = get_device(row.device_id)
    return issue_command(device, "end_session", {})


@endpoint("GET", "/sessions",
          summary="List sessions, newest first (filter by device, project, time, intent, outcome)",
          tag="sessions", query=SessionQuery, response=SessionList)
def list_sessions():
    q = parse_query(SessionQuery)
    where = session_conditions(device_id=q.device_id, project_id=q.project_id, from_=q.from_, to=q.to,
                               intent=q.intent, outcome=q.outcome)
    rows, next_cursor = session_page(where, q.limit, q.cursor)
    return {"items": [_out(r) for r in rows], "next_cursor": next_cursor}


@endpoint("GET", "/sessions/<uuid:session_id>", summary="One session with its events in order",
          tag="sessions", response=SessionDetail, errors=(404,))
def get_session(session_id: uuid.UUID):
    row = _get(session_id)
    events = session_events(row)
    return {**_out(row), "events": [EventOut.model_validate(e).model_dump(mode="json") for e in events]}


@endpoint("POST", "/sessions/<uuid:session_id>/end",
          summary="Ask the device to end this session now (an end_session command)", tag="sessions",
          response=CommandOut, status=202, errors=(404, 409))
def end_session(session_id: uuid.UUID):
    return command_out(end(_get(session_id))), 202


assert "open" in get_args(EndState)
