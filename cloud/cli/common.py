"""What every ``voxfleet cloud`` command shares: the data folder option, error exits, the
configuration and a checked database session.

Heavy imports (SQLAlchemy, Flask) happen inside the functions so ``voxfleet --help`` stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

DATA_DIR_HELP = "Cloud data folder (cloud.toml, secret key, SQLite database). Default: var/cloud"


def data_dir_option(func: Any) -> Any:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="VOXFLEET_DATA_DIR", help=DATA_DIR_HELP)(func)


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def info(message: str) -> None:
    click.echo(message, err=True)


def cloud_config(data_dir: Path | None, **overrides: Any):
    from cloud.config import ConfigError, load_config

    try:
        return load_config(data_dir, **overrides)
    except ConfigError as exc:
        fail(str(exc), 2)


def db_session(config: Any, *, migrated: bool = True):
    """A session as the app role, after checking the database is reachable and up to date."""
    from cloud.db.session import DatabaseError, check_connection, make_engine
    from cloud.migrations import current_revision, head_revision
    from cloud.scoping import session_factory

    try:
        owner = make_engine(config.database_url)
        try:
            check_connection(owner)
            if migrated and current_revision(owner) != head_revision():
                fail(f"the database {safe(config.database_url)} is not up to date: "
                     f"run `voxfleet cloud db upgrade --data-dir {config.data_dir}` first")
        finally:
            owner.dispose()
        engine = make_engine(config.database_url, app_role=config.database_role or None)
        check_connection(engine)
    except DatabaseError as exc:
        fail(str(exc))
    return session_factory(engine)()


def safe(url: str) -> str:
    from cloud.db.session import safe_url

    return safe_url(url)
