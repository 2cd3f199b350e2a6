"""Voice sessions: filtered, newest first, with cursor pagination; one with its events; end an active one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field

from cloud import services
from cloud.api.common import Input, Output, caller, endpoint, owned, parse_query, scope
from cloud.api.devices import CommandOut
from cloud.db import VoiceSession
from cloud.domain import sessions
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
    intent_stage: str | None = Field(default=None, description="the device pipeline's stage that matched "
                                                              "(devices from 0.2.0)")
    intent_confidence: float | None = Field(default=None, description="how sure that stage was, 0-1")
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


@endpoint("GET", "/sessions",
          summary="List sessions, newest first (filter by device, project, time, intent, outcome)",
          tag="sessions", query=SessionQuery, response=SessionList)
def list_sessions():
    q = parse_query(SessionQuery)
    where = sessions.session_conditions(device_id=q.device_id, project_id=q.project_id, from_=q.from_,
                                        to=q.to, intent=q.intent, outcome=q.outcome)
    page = sessions.session_page(scope(), where, q.limit, q.cursor)
    return {"items": [SessionOut.dump(r) for r in page.rows], "next_cursor": page.next_cursor}


@endpoint("GET", "/sessions/<uuid:session_id>", summary="One session with its events in order",
          tag="sessions", response=SessionDetail, errors=(404,))
def get_session(session_id: uuid.UUID):
    row = owned(VoiceSession, session_id, "session")
    events = sessions.session_events(scope(), row)
    return {**SessionOut.dump(row), "events": [EventOut.dump(e) for e in events]}


@endpoint("POST", "/sessions/<uuid:session_id>/end",
          summary="Ask the device to end this session now (an end_session command)", tag="sessions",
          response=CommandOut, status=202, errors=(404, 409))
def end_session(session_id: uuid.UUID):
    row = owned(VoiceSession, session_id, "session")
    return CommandOut.dump(sessions.end_session(caller(), row, downlink=services.downlink())), 202
