"""delivery: webhooks on jobs, per-user webhook secret, the worker that ran a job

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('webhook_secret', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('worker', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('callback_url', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('webhook_status', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('webhook_attempts', postgresql.JSONB(astext_type=sa.Text()),
                                    server_default=sa.text("'[]'::jsonb"), nullable=False))
    op.add_column('jobs', sa.Column('webhook_next_at', sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        'ck_jobs_webhook_status', 'jobs',
        "webhook_status IS NULL OR webhook_status IN ('pending', 'delivered', 'failed')")
    op.create_index('ix_jobs_webhook_due', 'jobs', ['webhook_next_at'], unique=False,
                    postgresql_where=sa.text("webhook_status = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_jobs_webhook_due', table_name='jobs', postgresql_where=sa.text("webhook_status = 'pending'"))
    op.drop_constraint('ck_jobs_webhook_status', 'jobs', type_='check')
    for column in ('webhook_next_at', 'webhook_attempts', 'webhook_status', 'callback_url', 'worker'):
        op.drop_column('jobs', column)
    op.drop_column('users', 'webhook_secret')
