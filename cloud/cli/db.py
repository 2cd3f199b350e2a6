"""``voxfleet cloud db ...``: create and migrate the cloud's database."""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli.common import cloud_config, data_dir_option, fail, info, safe


@click.group()
def db() -> None:
    """The cloud's database."""


@db.command("upgrade")
@data_dir_option
@click.option("--revision", default="head", show_default=True, help="Migrate to this revision.")
def db_upgrade(data_dir: Path | None, revision: str) -> None:
    """Create or migrate the database to the latest schema (safe to run again)."""
    from cloud.db.session import DatabaseError, check_connection, make_engine
    from cloud.migrations import current_revision, upgrade

    config = cloud_config(data_dir)
    try:
        engine = make_engine(config.database_url)
        check_connection(engine)
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
        engine.dispose()
    except DatabaseError as exc:
        fail(str(exc))
    where = safe(config.database_url)
    if before == after:
        info(f"database {where} already at revision {after}")
    else:
        info(f"database {where} migrated from {before or 'empty'} to revision {after}")
