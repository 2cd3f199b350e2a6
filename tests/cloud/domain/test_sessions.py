"""cloud.domain.sessions called directly, on SQLite and PostgreSQL: the filter both the API and the
portal offer, pages without gaps or repeats for equal start times, events in order, and ending a
session: sent to the device through a real broker while open, refused once it has ended."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from cloud.db import Command, SessionEvent, VoiceSession, utcnow
from cloud.domain import sessions
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from cloud.scoping import TenantScope
from protocol.topics import Channel, topic
from tests.cloud.broker.test_contract import WAIT
from tests.cloud.domain.test_fixtures import Rig, broker_rig_fixture, rig_fixture  # noqa: F401


def _all_pages(scope, where, limit) -> list[uuid.UUID]:
    seen, cursor = [], None
    while True:
        page = sessions.session_page(scope, where, limit, cursor)
        seen += [s.id for s in page.rows]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_filters_and_pages_without_gaps_for_equal_start_times(rig: Rig) -> None:
    org = rig.tenant()
    lobby, bar = rig.device(org, "Lobby"), rig.device(org, "Bar")
    same = utcnow() - timedelta(minutes=5)
    timers = [rig.session(org, lobby, started_at=same, intent_skill="skill-timer", intent_name="set_timer",
                          end_state="handled") for _ in range(5)]
    failed = rig.session(org, bar, started_at=same - timedelta(minutes=1), end_state="not_understood")
    with rig.caller(org) as caller:
        everything = _all_pages(caller.scope, [], 2)
        assert sorted(everything[:5]) == sorted(timers) and everything[5] == failed
        assert len(set(everything)) == 6
        by_intent = sessions.session_conditions(intent="skill-timer:set_timer", device_id=lobby.id)
        assert sorted(_all_pages(caller.scope, by_intent, 50)) == sorted(timers)
        assert _all_pages(caller.scope, sessions.session_conditions(outcome="not_understood"), 50) == [failed]
        window = sessions.session_conditions(from_=same - timedelta(seconds=1),
                                             to=same + timedelta(seconds=1))
        assert sorted(_all_pages(caller.scope, window, 50)) == sorted(timers)
        with pytest.raises(DomainError) as bad:
            sessions.session_page(caller.scope, [], 2, "not-a-cursor")
        assert (bad.value.status, bad.value.code) == (400, "invalid_cursor")


def test_a_sessions_events_come_in_order(rig: Rig) -> None:
    org = rig.tenant()
    device = rig.device(org)
    session_id = rig.session(org, device)
    start = utcnow()
    with rig.database.sessions() as db:
        scope = TenantScope(db, org.id)
        for seq in (2, 0, 1):
            scope.add(SessionEvent(device_id=device.id, session_id=session_id, event_id=uuid.uuid4(), seq=seq,
                                   type="utterance", ts=start + timedelta(milliseconds=seq), payload={}))
        db.commit()
    with rig.caller(org) as caller:
        events = sessions.session_events(caller.scope, get_owned(caller.scope, VoiceSession, session_id))
        assert [e.seq for e in events] == [0, 1, 2]


def test_an_open_session_is_ended_on_the_device_and_an_ended_one_refused(broker_rig: Rig) -> None:
    rig = broker_rig
    org = rig.tenant()
    device = rig.device(org, on_broker=True)
    open_id = rig.session(org, device)
    ended_id = rig.session(org, device, end_state="answered", ended_at=utcnow())
    probe = device.connect(rig.port)
    assert not probe.subscribe(topic(device.key, Channel.COMMANDS)).is_failure
    with rig.caller(org) as caller:
        command = sessions.end_session(caller, get_owned(caller.scope, VoiceSession, open_id),
                                       downlink=rig.downlink)
        assert (command.action, command.status) == ("end_session", "sent")
        with pytest.raises(DomainError) as refused:
            sessions.end_session(caller, get_owned(caller.scope, VoiceSession, ended_id),
                                 downlink=rig.downlink)
        assert (refused.value.status, refused.value.code) == (409, "session_ended")
    assert json.loads(probe.messages.get(timeout=WAIT).payload)["action"] == "end_session"
    probe.close()
    assert [c.action for c in rig.rows(Command)] == ["end_session"]
