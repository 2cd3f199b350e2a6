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
from cloud.db import SessionEvent, VoiceSession
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


@endpoint("GET", "/sessions",
          summary="List sessions, newest first (filter by device, project, time, intent, outcome)",
          tag="sessions", query=SessionQuery, response=SessionList)
def list_sessions():
    q = parse_query(SessionQuery)
    where: list[Any] = []
    if q.device_id is not None:
        where.append(VoiceSession.device_id == q.device_id)
    if q.project_id is not None:
        where.append(VoiceSession.project_id == q.project_id)
    if q.from_ is not None:
        where.append(VoiceSession.started_at >= q.from_)
    if q.to is not None:
        where.append(VoiceSession.started_at < q.to)
    if q.intent is not None:
        skill, sep, name = q.intent.rpartition(":")
        if sep:
            where.append(and_(VoiceSession.intent_skill == skill, VoiceSession.intent_name == name))
        else:
            where.append(VoiceSession.intent_name == q.intent)
    if q.outcome is not None:
        where.append(VoiceSession.end_state == q.outcome)
    if q.cursor:
        at, last = decode_cursor(q.cursor)
        where.append(or_(VoiceSession.started_at < at,
                         and_(VoiceSession.started_at == at, VoiceSession.id < last)))
    rows = scope().all(VoiceSession, *where,
                       order_by=[VoiceSession.started_at.desc(), VoiceSession.id.desc()], limit=q.limit + 1)
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return {"items": [_out(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1].started_at, rows[-1].id) if more else None}


@endpoint("GET", "/sessions/<uuid:session_id>", summary="One session with its events in order",
          tag="sessions", response=SessionDetail, errors=(404,))
def get_session(session_id: uuid.UUID):
    row = _get(session_id)
    events = scope().all(SessionEvent, SessionEvent.session_id == row.id,
                         order_by=[SessionEvent.seq, SessionEvent.id])
    return {**_out(row), "events": [EventOut.model_validate(e).model_dump(mode="json") for e in events]}


@endpoint("POST", "/sessions/<uuid:session_id>/end",
          summary="Ask the device to end this session now (an end_session command)", tag="sessions",
          response=CommandOut, status=202, errors=(404, 409))
def end_session(session_id: uuid.UUID):
    row = _get(session_id)
    if row.ended_at is not None or (row.end_state is not None and row.end_state != "open"):
        raise ApiError(409, "session_ended", "this session has already ended")
    device = get_device(row.device_id)
    return command_out(issue_command(device, "end_session", {})), 202


assert "open" in get_args(EndState)
