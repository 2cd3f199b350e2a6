"""Personal preferences, organisation settings, a session epoch per user, and indexes for the
portals' cross-tenant and filtered queries (bench/portal.py at 1,000,000 sessions).

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("preferences", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=True))
    op.create_index("ix_sessions_started_at_end_state", "sessions", ["started_at", "end_state"])
    op.create_index("ix_sessions_tenant_id_end_state_started_at", "sessions",
                    ["tenant_id", "end_state", "started_at"])
    op.create_index("ix_audit_log_at_id", "audit_log", ["at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at_id", table_name="audit_log")
    op.drop_index("ix_sessions_tenant_id_end_state_started_at", table_name="sessions")
    op.drop_index("ix_sessions_started_at_end_state", table_name="sessions")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("settings")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")
        batch.drop_column("preferences")
