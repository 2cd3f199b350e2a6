"""Row-level security for PostgreSQL, used by migrations (and future ones: a new tenant table calls
``enable_tenant_rls`` and ``grant_app`` in its revision). Everything here is a no-op on SQLite.

The policy lets a row through when it belongs to the tenant set for the transaction
(``voxfleet.tenant_id``, set by cloud.scoping with ``SET LOCAL``) or when the transaction runs in
the platform scope (``voxfleet.platform = 'on'``). No setting at all: no rows. FORCE makes the
policy apply to the tables' owner too; the app runs as the non-owner role ``voxfleet_app``.
"""

from __future__ import annotations

from alembic import op

APP_ROLE = "voxfleet_app"
POLICY = "tenant_isolation"


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def predicate(column: str = "tenant_id") -> str:
    return (f"current_setting('voxfleet.platform', true) = 'on' "
            f"OR {column} = NULLIF(current_setting('voxfleet.tenant_id', true), '')::uuid")


def create_app_role() -> None:
    """The role the app runs as: not the tables' owner, so RLS binds it. Shared by all databases
    of the cluster, so it is created only if absent and never dropped by a downgrade."""
    if not _postgresql():
        return
    op.execute(f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    BEGIN
      CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- created meanwhile by a migration of another database
    END;
  END IF;
  -- The migrating (owner) role must be able to SET ROLE to it; superusers already can.
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
     AND NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
    EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
  END IF;
END
$$""")
    op.execute(f"GRANT USAGE ON SCHEMA {_schema()} TO {APP_ROLE}")


def _schema() -> str:
    return '"' + op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one() + '"'


def grant_app(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    if _postgresql():
        op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    if not _postgresql():
        return
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    rule = predicate(column)
    op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({rule}) WITH CHECK ({rule})")


def disable_tenant_rls(table: str) -> None:
    if not _postgresql():
        return
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
