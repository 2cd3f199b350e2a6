"""cloud.domain.usage called directly, on SQLite and PostgreSQL: meters and session counts summed per
day and per hour in UTC, per device or project, only the tenant's own; unknown periods refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cloud.db import UsageRecord
from cloud.domain.errors import DomainError
from cloud.domain.usage import aggregate
from cloud.scoping import TenantScope
from tests.cloud.domain.test_fixtures import Org, Rig, rig_fixture  # noqa: F401

DAY = datetime(2026, 11, 2, tzinfo=UTC)


def _usage(rig: Rig, org: Org, device_id: uuid.UUID, ts: datetime, **meters) -> None:
    with rig.database.sessions() as db:
        TenantScope(db, org.id).add(UsageRecord(device_id=device_id, project_id=org.project_id,
                                                event_id=uuid.uuid4(), ts=ts, **meters))
        db.commit()


def test_sums_per_day_hour_and_device_for_the_tenant_only(rig: Rig) -> None:
    org, other = rig.tenant(), rig.tenant()
    lobby, bar = rig.device(org, "Lobby"), rig.device(org, "Bar")
    stranger = rig.device(other, "Elsewhere")
    _usage(rig, org, lobby.id, DAY + timedelta(hours=9, minutes=5), tts_characters=40, stt_seconds=1.5)
    _usage(rig, org, bar.id, DAY + timedelta(hours=9, minutes=50), tts_characters=2)
    _usage(rig, org, lobby.id, DAY + timedelta(days=1, hours=1), tts_characters=100)
    _usage(rig, other, stranger.id, DAY + timedelta(hours=9), tts_characters=999)
    rig.session(org, lobby, started_at=DAY + timedelta(hours=9, minutes=1))
    with rig.caller(org) as caller:
        days, totals = aggregate(caller.scope, DAY, DAY + timedelta(days=2), "day", None)
        assert [(r["period"], r["tts_characters"], r["sessions"]) for r in days] == [
            ("2026-11-02", 42, 1), ("2026-11-03", 100, 0)]
        assert totals["tts_characters"] == 142 and float(totals["stt_seconds"]) == 1.5
        hours, _ = aggregate(caller.scope, DAY, DAY + timedelta(days=1), "hour", None)
        assert [(r["period"], r["tts_characters"]) for r in hours] == [("2026-11-02T09:00", 42)]
        by_device, _ = aggregate(caller.scope, DAY, DAY + timedelta(days=1), "day", "device")
        assert {str(r["device_id"]): r["tts_characters"] for r in by_device} == {str(lobby.id): 40,
                                                                                  str(bar.id): 2}


def test_unknown_periods_and_groupings_are_refused(rig: Rig) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        for period, group in (("week", None), ("day", "tenant")):
            with pytest.raises(DomainError) as refused:
                aggregate(caller.scope, DAY, DAY + timedelta(days=1), period, group)
            assert (refused.value.status, refused.value.code) == (400, "invalid_query")
