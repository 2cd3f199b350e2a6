"""PostgreSQL's row-level security catches what bypasses the scoping layer: hand-written SQL and
Core statements on the connection see and change only the scope's tenant's rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from cloud.db import AuditEntry, Device, new_id
from cloud.scoping import PlatformScope, TenantScope
from tests.cloud.fleet import build


def _device_ids(rows) -> set:
    return {row[0] for row in rows}


def test_raw_sql_under_a_tenant_scope_sees_only_that_tenant(pg):
    with pg.sessions() as db:
        a, b = build(db, [([1, 2], 0), ([0, 3, 1], 0)])
    # Without RLS (the owner, a superuser) the same query sees both tenants: the check below can fail.
    with pg.owner.connect() as conn:
        assert _device_ids(conn.execute(text("SELECT id FROM devices"))) == a.device_ids | b.device_ids
    with pg.sessions() as db:
        TenantScope(db, a.tenant_id)
        assert _device_ids(db.execute(text("SELECT id FROM devices"))) == a.device_ids
        # A Core select on the bare connection skips the ORM hooks; RLS still filters it.
        assert _device_ids(db.connection().execute(select(Device.__table__.c.id))) == a.device_ids
        # Changes aimed at everybody's rows change only the tenant's.
        changed = db.execute(text("UPDATE devices SET name = 'mine now'")).rowcount
        assert changed == len(a.device_ids)
        db.commit()
    with pg.owner.connect() as conn:
        names = dict(conn.execute(text("SELECT id, name FROM devices")).all())
    assert {i for i, n in names.items() if n == "mine now"} == a.device_ids


def test_raw_insert_of_another_tenants_row_is_refused(pg):
    with pg.sessions() as db:
        a, b = build(db, [([1], 0), ([1], 0)])
    with pg.sessions() as db:
        TenantScope(db, a.tenant_id)
        with pytest.raises(DBAPIError, match="row-level security"):
            db.execute(text("INSERT INTO projects (id, tenant_id, name, description, is_default, created_at) "
                            "VALUES (:id, :tenant, 'sneaky', '', false, now())"),
                       {"id": new_id(), "tenant": b.tenant_id})


def test_no_scope_means_no_rows_and_platform_means_all(pg):
    with pg.sessions() as db:
        a, b = build(db, [([2], 0), ([1], 0)])
    with pg.sessions() as db:
        assert db.execute(text("SELECT id FROM devices")).all() == []
        PlatformScope(db)
        assert _device_ids(db.execute(text("SELECT id FROM devices"))) == a.device_ids | b.device_ids


def test_scope_ends_with_the_transaction(pg):
    """SET LOCAL: a pooled connection never carries one request's tenant into the next."""
    with pg.sessions() as db:
        a, _ = build(db, [([1], 0), ([1], 0)])
    with pg.sessions() as db:
        TenantScope(db, a.tenant_id)
        assert len(db.execute(text("SELECT id FROM devices")).all()) == 1
        connection = db.connection().connection.dbapi_connection
        db.commit()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM devices")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "voxfleet_app"
    connection.rollback()


def test_audit_log_is_append_only_for_the_app(pg):
    with pg.sessions() as db:
        platform = PlatformScope(db)
        platform.add(AuditEntry(actor="cli", action="tenant.create"))
        db.commit()
        with pytest.raises(DBAPIError, match="permission denied"):
            db.execute(text("UPDATE audit_log SET action = 'nothing happened'"))
        db.rollback()
        PlatformScope(db)
        with pytest.raises(DBAPIError, match="permission denied"):
            db.execute(text("DELETE FROM audit_log"))
