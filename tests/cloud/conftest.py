"""Databases for the cloud's tests: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is the one on 127.0.0.1:5432 (trust auth; $VOXFLEET_TEST_PG_URL overrides). Each test
session works in its own database, ``voxfleet_<hex>``, dropped at the end, so runs never collide.
If PostgreSQL cannot be reached the tests FAIL: CI has it, and a silent skip would hide half the
suite. Schemas come from the migrations, never from ``create_all``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from cloud.db import Base
from cloud.db.session import CloudSession, make_engine
from cloud.migrations import upgrade
from cloud.scoping import session_factory

PG_CANDIDATES = [os.environ["VOXFLEET_TEST_PG_URL"]] if os.environ.get("VOXFLEET_TEST_PG_URL") else [
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
]


def _admin_url() -> str:
    errors = []
    for url in PG_CANDIDATES:
        try:
            engine = create_engine(url, connect_args={"connect_timeout": 5})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return url
        except Exception as exc:  # collected and reported below
            errors.append(f"{make_url(url).render_as_string(hide_password=True)}: {exc}")
    pytest.fail("PostgreSQL is required for the cloud's storage tests (every one runs on SQLite and "
                "PostgreSQL) and none could be reached:\n  " + "\n  ".join(errors), pytrace=False)


class PostgresDatabases:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.made: list[str] = []

    def create(self) -> str:
        name = f"voxfleet_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(_admin_url())
    yield databases
    databases.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> str:
    """A database with nothing in it, for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    return request.getfixturevalue("postgres").create()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_url(request, tmp_path_factory) -> str:
    """One migrated database per backend for the whole session; tests wipe rows, not the schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'cloud.db'}"
    else:
        url = request.getfixturevalue("postgres").create()
    upgrade(url)
    return url


@dataclass
class Database:
    url: str
    owner: Engine                       # migrations' role: bypasses RLS (for set-up and checks)
    app: Engine                         # the app's role: RLS applies on PostgreSQL
    sessions: sessionmaker[CloudSession]

    @property
    def backend(self) -> str:
        return self.owner.dialect.name

    def wipe(self) -> None:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        with self.owner.begin() as conn:
            if self.backend == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
            else:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))


@contextmanager
def _engines(url: str) -> Iterator[Database]:
    owner = make_engine(url)
    app = make_engine(url, app_role="voxfleet_app")
    yield Database(url, owner, app, session_factory(app))
    owner.dispose()
    app.dispose()


@pytest.fixture(scope="session")
def database_engines(migrated_url) -> Iterator[Database]:
    with _engines(migrated_url) as engines:
        yield engines


@pytest.fixture
def database(database_engines) -> Iterator[Database]:
    """A migrated, empty database on each backend."""
    database_engines.wipe()
    yield database_engines
    database_engines.wipe()


@pytest.fixture(scope="session")
def pg_engines(postgres) -> Iterator[Database]:
    url = postgres.create()
    upgrade(url)
    with _engines(url) as engines:
        yield engines


@pytest.fixture
def pg(pg_engines) -> Iterator[Database]:
    """A migrated, empty PostgreSQL database, for what only PostgreSQL does (row-level security)."""
    pg_engines.wipe()
    yield pg_engines
    pg_engines.wipe()
