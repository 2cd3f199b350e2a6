"""Engines and sessions, the same way on SQLite and PostgreSQL.

One engine per process (pooled); one ORM session per Flask request, on ``g`` as in Flask's
tutorial, closed when the request ends. On PostgreSQL the app's connections switch to a non-owner
role, so the row-level security policies apply to everything the app runs (cloud/scoping.py).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

SCOPE_KEY = "voxfleet.scope"
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseError(RuntimeError):
    """The database cannot be used; the message names it (without its password) and says why."""


def safe_url(url: str | URL) -> str:
    """The URL as it may be shown to a person or a log: password masked."""
    try:
        parsed = make_url(url)
        # Shown as people write it: without the driver we picked (postgresql+psycopg).
        return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not parseable: mask whatever sits where a password would.
        return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", str(url))


def parse_url(url: str | URL) -> URL:
    """Check a database URL and pick our drivers: psycopg 3 for PostgreSQL, the stdlib for SQLite."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseError(f"invalid database URL {safe_url(url)!r}: expected sqlite:///PATH "
                            "or postgresql://USER@HOST:PORT/DBNAME") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise DatabaseError(f"unsupported database {safe_url(url)!r}: use SQLite or PostgreSQL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the ingest worker write while web requests read; busy_timeout waits out a writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _set_role(role: str):
    def connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f'SET ROLE "{role}"')
        # SET is transactional in PostgreSQL: commit so a later rollback keeps the role.
        dbapi_conn.commit()

    return connect


def make_engine(url: str | URL, *, app_role: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url``. ``app_role``: the PostgreSQL role the app's connections run as.

    Migrations run without ``app_role`` (as the tables' owner); the app runs with it.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot use database {safe_url(url)!r}: {exc.strerror}: "
                                    f"{Path(parsed.database).parent}") from None
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise DatabaseError(f"no driver for {safe_url(url)!r}: {exc}") from None
    if app_role:
        if not _ROLE.match(app_role):
            raise DatabaseError(f"invalid database role {app_role!r}")
        event.listen(engine, "connect", _set_role(app_role))
    return engine


def check_connection(engine: Engine) -> None:
    """Run ``SELECT 1``; turn a driver error into one a person can act on."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if ('role "' in reason and "does not exist" in reason) or "permission denied to set role" in reason:
            reason += " (run `voxfleet cloud db upgrade` first: it creates the app role)"
        raise DatabaseError(f"cannot use database {safe_url(engine.url)!r}: {reason}") from None


class CloudSession(Session):
    """The app's ORM session. Its transactions carry the scope set by cloud.scoping (on PostgreSQL)."""


def apply_scope(session: Session, connection: Connection | None = None) -> None:
    """Tell PostgreSQL which tenant this transaction works for, for the row-level security policies.

    ``set_config(..., true)`` is ``SET LOCAL``: it ends with the transaction, so a pooled connection
    never carries one request's tenant into the next.
    """
    scope = session.info.get(SCOPE_KEY)
    if scope is None:
        return
    if connection is None:
        if not session.in_transaction():
            return  # applied by the after_begin hook when the transaction starts
        connection = session.connection()
    if connection.dialect.name != "postgresql":
        return
    tenant_id, platform = scope
    connection.execute(
        text("SELECT set_config('voxfleet.tenant_id', :tenant, true), "
             "set_config('voxfleet.platform', :platform, true)"),
        {"tenant": str(tenant_id) if tenant_id else "", "platform": "on" if platform else "off"},
    )


@event.listens_for(CloudSession, "after_begin")
def _scope_new_transaction(session: Session, _txn: SessionTransaction, connection: Connection) -> None:
    apply_scope(session, connection)


def set_scope(session: Session, tenant_id: uuid.UUID | None, platform: bool) -> None:
    session.info[SCOPE_KEY] = (tenant_id, platform)
    apply_scope(session)


# --- Flask -------------------------------------------------------------------------------------

def init_app(app: Any, engine: Engine, sessions: sessionmaker[CloudSession]) -> None:
    """Give the app its engine and session factory (cloud.scoping.session_factory: sessions that carry
    the scoping layer's checks), and close each request's session at teardown."""
    app.extensions["voxfleet.db"] = (engine, sessions)
    app.teardown_appcontext(close_db)


def get_engine() -> Engine:
    from flask import current_app

    return current_app.extensions["voxfleet.db"][0]


def get_db() -> CloudSession:
    """This request's session: made on first use, closed when the request ends."""
    from flask import current_app, g

    if "db" not in g:
        g.db = current_app.extensions["voxfleet.db"][1]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    from flask import g

    db = g.pop("db", None)
    if db is not None:
        db.close()
