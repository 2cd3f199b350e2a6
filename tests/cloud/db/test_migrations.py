"""The migrations build the schema the models describe, identically on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, text

from cloud.db import Base, Tenant, new_id, utcnow
from cloud.db.session import make_engine
from cloud.migrations import current_revision, downgrade, head_revision, schema_diff, upgrade

SCOPED_TABLES = sorted(m.local_table.name for m in Base.registry.mappers
                       if getattr(m.class_, "__tenancy__", None) in ("owned", "linked"))
OWNED_TABLES = sorted(m.local_table.name for m in Base.registry.mappers
                      if getattr(m.class_, "__tenancy__", None) == "owned")


def test_upgrade_builds_exactly_the_models(empty_database_url):
    assert current_revision(empty_database_url) is None
    upgrade(empty_database_url)
    assert current_revision(empty_database_url) == head_revision()
    assert schema_diff(empty_database_url) == []


def test_schema_diff_notices_a_drifted_database(empty_database_url):
    """The agreement check above can fail: a database missing an index is reported."""
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_devices_tenant_id"))
    diff = schema_diff(engine)
    engine.dispose()
    assert any(op[0] == "add_index" and op[1].name == "ix_devices_tenant_id" for op in diff), diff


def test_second_upgrade_is_a_no_op_and_keeps_data(empty_database_url):
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(Tenant.__table__.insert().values(id=new_id(), name="Kept", slug="kept", status="active",
                                                      created_at=utcnow()))
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM tenants")).scalars().all() == ["Kept"]
    assert schema_diff(engine) == []
    engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_again_works(empty_database_url):
    upgrade(empty_database_url)
    downgrade(empty_database_url, "base")
    engine = make_engine(empty_database_url)
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert schema_diff(engine) == []
    engine.dispose()


def test_every_tenant_table_has_an_indexed_tenant_id(empty_database_url):
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    inspector = inspect(engine)
    for table in SCOPED_TABLES:
        columns = {c["name"]: c for c in inspector.get_columns(table)}
        assert "tenant_id" in columns, table
        if table in OWNED_TABLES:
            assert columns["tenant_id"]["nullable"] is False, table
            fks = [fk for fk in inspector.get_foreign_keys(table)
                   if fk["constrained_columns"] == ["tenant_id"]]
            assert fks and fks[0]["referred_table"] == "tenants", table
        leading = [ix["column_names"][0] for ix in inspector.get_indexes(table)]
        assert "tenant_id" in leading, table
    engine.dispose()


def test_postgresql_forces_row_level_security_on_every_tenant_table(postgres):
    url = postgres.create()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
        )).all()
        owner_is_app = conn.execute(text(
            "SELECT tableowner = 'voxfleet_app' FROM pg_tables WHERE tablename = 'devices'")).scalar_one()
    engine.dispose()
    secured = {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}
    for table in [*SCOPED_TABLES, "tenants"]:
        assert secured[table] == (True, True, 1), table
    assert owner_is_app is False


def test_sqlite_database_gets_foreign_keys_and_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'cloud.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    engine.dispose()
