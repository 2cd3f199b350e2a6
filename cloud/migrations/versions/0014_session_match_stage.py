"""Which stage of the device's intent pipeline matched a session and how sure it was
(``sessions.intent_stage``, ``sessions.intent_confidence``): sent by devices from 0.2.0, NULL before.

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("intent_stage", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("intent_confidence", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("intent_confidence")
        batch.drop_column("intent_stage")
