"""Lago adapter: the event outbox (lago_events) and what Lago holds per tenant (lago_customers),
both tenant-owned with row-level security on PostgreSQL. See cloud/billing/lago/.

Revision ID: 0011
Revises: 0010
"""
# ruff: noqa: E501
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.migrations.rls import disable_tenant_rls, enable_tenant_rls, grant_app

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TENANT_TABLES = ("lago_events", "lago_customers")


def upgrade() -> None:
    op.create_table('lago_events',
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('transaction_id', sa.String(length=100), nullable=False),
    sa.Column('external_subscription_id', sa.String(length=100), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'sent', 'rejected')", name=op.f('ck_lago_events_status')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_lago_events_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lago_events')),
    sa.UniqueConstraint('tenant_id', 'transaction_id', name=op.f('uq_lago_events_tenant_id_transaction_id'))
    )
    op.create_index(op.f('ix_lago_events_event_id'), 'lago_events', ['event_id'])
    op.create_index(op.f('ix_lago_events_tenant_id'), 'lago_events', ['tenant_id'])
    op.create_index('ix_lago_events_tenant_id_status', 'lago_events', ['tenant_id', 'status'])
    op.create_table('lago_customers',
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_lago_customers_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lago_customers')),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_lago_customers_tenant_id'))
    )
    op.create_index(op.f('ix_lago_customers_tenant_id'), 'lago_customers', ['tenant_id'])
    for table in TENANT_TABLES:
        enable_tenant_rls(table)
        grant_app(table)


def downgrade() -> None:
    for table in TENANT_TABLES:
        disable_tenant_rls(table)
    op.drop_index(op.f('ix_lago_customers_tenant_id'), table_name='lago_customers')
    op.drop_table('lago_customers')
    op.drop_index('ix_lago_events_tenant_id_status', table_name='lago_events')
    op.drop_index(op.f('ix_lago_events_tenant_id'), table_name='lago_events')
    op.drop_index(op.f('ix_lago_events_event_id'), table_name='lago_events')
    op.drop_table('lago_events')
