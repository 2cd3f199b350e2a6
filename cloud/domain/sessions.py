"""Voice sessions: the filter both the API and the portals offer, pages of them newest first, one
session's events in order, and ending a session that is still open."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import and_

from cloud.db import Command, Device, SessionEvent, VoiceSession
from cloud.domain.caller import Caller
from cloud.domain.commands import issue_command
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from cloud.domain.paging import Page, newest_first
from cloud.downlink import Downlink
from cloud.scoping import TenantScope
from protocol.messages import EndState


def session_conditions(*, device_id: uuid.UUID | None = None, project_id: uuid.UUID | None = None,
                       from_: datetime | None = None, to: datetime | None = None, intent: str | None = None,
                       outcome: str | None = None) -> list[Any]:
    """WHERE clauses for a session filter. ``intent`` is an intent name or ``skill_id:intent``;
    ``outcome`` an end state; the time range is [from_, to) on the start time."""
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


def session_page(scope: TenantScope, where: list[Any], limit: int, cursor: str | None) -> Page[VoiceSession]:
    """One page of sessions, newest first. DomainError 400 ``invalid_cursor`` for a cursor this code
    did not make."""
    return newest_first(scope, VoiceSession, VoiceSession.started_at, where, limit, cursor)


def session_events(scope: TenantScope, session: VoiceSession) -> list[SessionEvent]:
    return scope.all(SessionEvent, SessionEvent.session_id == session.id,
                     order_by=[SessionEvent.seq, SessionEvent.id])


assert "open" in get_args(EndState)


def is_open(session: VoiceSession) -> bool:
    """Not ended yet: no end time, and no end state but ``open``."""
    return session.ended_at is None and session.end_state in (None, "open")


def end_session(caller: Caller, session: VoiceSession, *, downlink: Downlink) -> Command:
    """Send ``end_session`` to the session's device (issue_command). DomainError 409 ``session_ended``
    when it has ended already, or the command's own refusals (409 ``device_unpaired``)."""
    if not is_open(session):
        raise DomainError(409, "session_ended", "this session has already ended")
    device = get_owned(caller.scope, Device, session.device_id, "device")
    return issue_command(caller, device, "end_session", {}, downlink=downlink)
