"""Alembic environment. The connection comes from cloud.migrations (config.attributes), not from a file."""

from __future__ import annotations

from alembic import context

from cloud.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations through cloud.migrations (or `voxfleet cloud db upgrade`)")
    from cloud.db.session import make_engine

    engine = make_engine(url)
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: later revisions rebuild tables through batch mode.
    render_as_batch=True,
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
