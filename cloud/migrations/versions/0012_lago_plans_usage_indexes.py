"""Lago plans (what Lago was last given for each plan, platform-owned like plans), indexes for
looking usage up by when it arrived (the meter's clock-skew rule, the billing scheduler), and
``invoices.terms``: the plan's terms as they stood when the period was closed, so that recomputing a
draft during the grace window keeps the prices it was closed with (NULL on invoices closed before:
those fall back to the plan row).

Revision ID: 0012
Revises: 0011
"""
# ruff: noqa: E501
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.migrations.rls import grant_app

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lago_plans',
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_lago_plans_plan_id_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lago_plans')),
    sa.UniqueConstraint('plan_id', name=op.f('uq_lago_plans_plan_id'))
    )
    grant_app('lago_plans')
    op.create_index('ix_usage_records_tenant_id_received_at', 'usage_records', ['tenant_id', 'received_at'])
    op.create_index('ix_usage_records_received_at', 'usage_records', ['received_at'])
    with op.batch_alter_table('invoices') as batch:
        batch.add_column(sa.Column('terms', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('invoices') as batch:
        batch.drop_column('terms')
    op.drop_index('ix_usage_records_received_at', table_name='usage_records')
    op.drop_index('ix_usage_records_tenant_id_received_at', table_name='usage_records')
    op.drop_table('lago_plans')
