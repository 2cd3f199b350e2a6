"""Alembic migrations, configured in code: no alembic.ini is needed to run them.

    from cloud.migrations import upgrade
    upgrade("sqlite:///var/cloud/cloud.db")

Migrations run as the database owner (no app role), unlike the app. New revisions:
``python -m cloud.migrations revision -m "what" --autogenerate --url sqlite:///tmp/x.db`` after
upgrading that database to head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL, Engine

from cloud.db.session import make_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _connected(url_or_engine: str | URL | Engine) -> Iterator[Connection]:
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    with _connected(url_or_engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(url_or_engine: str | URL | Engine, revision: str = "base") -> None:
    with _connected(url_or_engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url_or_engine: str | URL | Engine) -> str | None:
    with _connected(url_or_engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_diff(url_or_engine: str | URL | Engine) -> list[Any]:
    """What Alembic's autogenerate would change: empty when the models and the database agree."""
    from cloud.db import Base

    with _connected(url_or_engine) as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "compare_server_default": False})
        return compare_metadata(context, Base.metadata)
