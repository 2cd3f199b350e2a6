"""Tenant isolation through the scoping layer, on SQLite and PostgreSQL: for random multi-tenant
data, nothing a TenantScope does ever returns, changes or deletes another tenant's rows."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud.db import ApiKey, AuditEntry, Device, PairingCode, Project, Tenant, User, VoiceSession, utcnow
from cloud.scoping import CrossTenantError, NotTenantOwned, PlatformScope, ScopeError, TenantScope
from tests.cloud.fleet import build

fleets = st.lists(
    st.tuples(st.lists(st.integers(0, 3), max_size=3), st.integers(0, 2)),
    min_size=2, max_size=4,
)
# Each example wipes the database first, so the function-scoped fixture is safe to share.
PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _ids(rows) -> set[uuid.UUID]:
    return {row.id for row in rows}


@PROPERTY
@given(shape=fleets)
def test_a_tenant_scope_reads_only_its_own_rows(database, shape):
    database.wipe()
    with database.sessions() as db:
        tenants = build(db, shape)
    for mine in tenants:
        others = [t for t in tenants if t is not mine]
        with database.sessions() as db:
            scope = TenantScope(db, mine.tenant_id)
            assert _ids(scope.all(Device)) == mine.device_ids
            assert _ids(scope.all(VoiceSession)) == mine.session_ids
            assert _ids(scope.all(ApiKey)) == mine.api_key_ids
            assert _ids(scope.all(Project)) == mine.project_ids
            assert scope.count(VoiceSession) == len(mine.session_ids)
            assert scope.tenant().id == mine.tenant_id
            assert _ids(db.scalars(select(Tenant))) == {mine.tenant_id}
            # A statement written without the scope's helpers is still confined (session hooks).
            assert _ids(db.scalars(select(Device))) == mine.device_ids
            for other in others:
                for device_id in other.device_ids:
                    assert scope.get(Device, device_id) is None
                for session_id in other.session_ids:
                    assert scope.get(VoiceSession, session_id) is None
                assert scope.get(Tenant, other.tenant_id) is None


@PROPERTY
@given(shape=fleets, data=st.data())
def test_a_tenant_scope_changes_and_deletes_only_its_own_rows(database, shape, data):
    database.wipe()
    with database.sessions() as db:
        tenants = build(db, shape)
    actor = data.draw(st.sampled_from(tenants))
    all_devices = set().union(*(t.device_ids for t in tenants))
    all_sessions = set().union(*(t.session_ids for t in tenants))
    with database.sessions() as db:
        scope = TenantScope(db, actor.tenant_id)
        # Aimed at every row of every tenant: only the actor's own may change.
        renamed = scope.update(Device, [Device.id.in_(all_devices)], {"name": "renamed"})
        deleted = scope.delete(VoiceSession, VoiceSession.id.in_(all_sessions))
        scope.commit()
    assert renamed == len(actor.device_ids)
    assert deleted == len(actor.session_ids)
    with database.sessions() as db:
        platform = PlatformScope(db)
        for device in platform.all(Device):
            assert (device.name == "renamed") == (device.id in actor.device_ids)
        left = _ids(platform.all(VoiceSession))
        assert left == all_sessions - actor.session_ids


@PROPERTY
@given(shape=fleets, data=st.data())
def test_a_tenant_scope_cannot_write_into_or_point_at_another_tenant(database, shape, data):
    database.wipe()
    with database.sessions() as db:
        tenants = build(db, shape)
    actor, victim = data.draw(st.permutations(tenants))[:2]
    with database.sessions() as db:
        scope = TenantScope(db, actor.tenant_id)
        with pytest.raises(CrossTenantError):
            scope.add(Project(name="sneaky", tenant_id=victim.tenant_id))
        with pytest.raises(CrossTenantError):
            scope.add(Device(project_id=next(iter(victim.project_ids)), name="sneaky",
                             device_key="dev-sneaky"))
        with pytest.raises(CrossTenantError):
            scope.update(Project, [], {"tenant_id": victim.tenant_id})
        if victim.device_ids:
            with pytest.raises(CrossTenantError):
                scope.insert_rows(VoiceSession, [{"device_id": next(iter(victim.device_ids)),
                                                  "session_key": "x", "started_at": utcnow()}])
        # An object of another tenant, loaded elsewhere and changed here, is refused at flush.
        foreign = PlatformScope(db).first(Project, Project.tenant_id == victim.tenant_id)
        TenantScope(db, actor.tenant_id)
        foreign.name = "changed by another tenant"
        with pytest.raises(CrossTenantError):
            db.flush()
        db.rollback()
    with database.sessions() as db:
        assert {p.name for p in PlatformScope(db).all(Project)} == {"Default"}


def test_tenant_scope_refuses_platform_tables(database):
    with database.sessions() as db:
        scope = TenantScope(db, uuid.uuid4())
        with pytest.raises(NotTenantOwned):
            scope.add(Tenant(name="x", slug="xx"))
        with pytest.raises(ScopeError, match="append-only"):
            scope.delete(AuditEntry)


def test_tenant_data_without_a_scope_is_refused(database):
    with database.sessions() as db:
        with pytest.raises(ScopeError, match="without a scope"):
            db.scalars(select(Device)).all()
        db.add(Project(name="orphan", tenant_id=uuid.uuid4()))
        with pytest.raises(ScopeError, match="without a scope"):
            db.flush()


def test_linked_rows_of_the_platform_stay_invisible_to_tenants(database):
    with database.sessions() as db:
        tenants = build(db, [([1], 0), ([1], 0)])
        platform = PlatformScope(db)
        platform.add(User(email="op@example.com", role="platform_admin"))
        platform.add(PairingCode(code="ABC234", device_key="dev-new", secret_hash="x", expires_at=utcnow()))
        platform.add(AuditEntry(actor="cli", action="operator.create"))
        scope = TenantScope(db, tenants[0].tenant_id)
        scope.add(User(email="owner@t0.example", role="tenant_owner"))
        scope.add(AuditEntry(actor="user:x", action="device.rename"))
        db.commit()
    with database.sessions() as db:
        scope = TenantScope(db, tenants[0].tenant_id)
        assert [u.email for u in scope.all(User)] == ["owner@t0.example"]
        assert scope.all(PairingCode) == []
        assert [a.action for a in scope.all(AuditEntry)] == ["device.rename"]
        other = TenantScope(db, tenants[1].tenant_id)
        assert other.all(User) == [] and other.all(AuditEntry) == []


def test_insert_rows_stores_an_event_once(database):
    from cloud.db import UsageRecord

    with database.sessions() as db:
        tenant = build(db, [([0], 0)])[0]
        scope = TenantScope(db, tenant.tenant_id)
        device_id = next(iter(tenant.device_ids))
        event_ids = [uuid.uuid4() for _ in range(3)]
        rows = [{"device_id": device_id, "event_id": e, "ts": utcnow(), "wake_words": 1} for e in event_ids]
        assert scope.insert_rows(UsageRecord, rows, ignore_duplicates=True) == 3
        assert scope.insert_rows(UsageRecord, rows[:2], ignore_duplicates=True) == 0
        # The count is what was really inserted: two known rows around a new one give 1, not 3.
        fresh = {"device_id": device_id, "event_id": uuid.uuid4(), "ts": utcnow(), "wake_words": 1}
        assert scope.insert_rows(UsageRecord, [rows[0], fresh, rows[1]], ignore_duplicates=True) == 1
        scope.commit()
        assert scope.count(UsageRecord) == 4
        stored = scope.first(UsageRecord)
        assert stored.ts.tzinfo is not None and stored.received_at.utcoffset().total_seconds() == 0


def test_a_reference_checked_once_does_not_let_another_tenants_reference_through(database):
    """The scope remembers ids it found to be its tenant's (one check per id); an id it has not
    checked, such as another tenant's device next to a remembered one, is still checked and refused."""
    from cloud.db import UsageRecord

    with database.sessions() as db:
        own, other = build(db, [([0], 0), ([0], 0)])
        scope = TenantScope(db, own.tenant_id)
        mine, theirs = next(iter(own.device_ids)), next(iter(other.device_ids))

        def row(device_id: uuid.UUID) -> dict:
            return {"device_id": device_id, "event_id": uuid.uuid4(), "ts": utcnow(), "wake_words": 1}

        assert scope.insert_rows(UsageRecord, [row(mine)], ignore_duplicates=True) == 1
        assert scope.insert_rows(UsageRecord, [row(mine)], ignore_duplicates=True) == 1
        with pytest.raises(CrossTenantError):
            scope.insert_rows(UsageRecord, [row(mine), row(theirs)], ignore_duplicates=True)
        db.rollback()
