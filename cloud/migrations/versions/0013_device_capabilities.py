"""What devices announce they can do (``devices.capabilities``, from their online presence, and when),
the desired-config fields a device acknowledged without knowing them (``config_acks.ignored``), and the
fields devices sent that ingest did not know (``ingest_workers.unknown_fields``).
Both NULL for rows from before: a device that never announced is a 0.1.0 device.

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("capabilities_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("config_acks") as batch:
        batch.add_column(sa.Column("ignored", sa.JSON(), nullable=True))
    with op.batch_alter_table("ingest_workers") as batch:
        batch.add_column(sa.Column("unknown_fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_workers") as batch:
        batch.drop_column("unknown_fields")
    with op.batch_alter_table("config_acks") as batch:
        batch.drop_column("ignored")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("capabilities_at")
        batch.drop_column("capabilities")
