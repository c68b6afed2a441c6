"""tools: a conversation's client tool definitions and tool_choice, a job's pending tool
calls (`required_action`) and the job that answered them (`continued_by`), and the
`requires_action` job status

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

OLD_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'cancelled', 'requires_action')"


def upgrade() -> None:
    op.add_column('conversations', sa.Column('tools', postgresql.JSONB(), nullable=True))
    op.add_column('conversations', sa.Column('tool_choice', postgresql.JSONB(), nullable=True))
    op.add_column('jobs', sa.Column('required_action', postgresql.JSONB(), nullable=True))
    op.add_column('jobs', sa.Column('continued_by', sa.UUID(), nullable=True))
    op.drop_constraint('ck_jobs_status', 'jobs', type_='check')
    op.create_check_constraint('ck_jobs_status', 'jobs', f"status IN {NEW_STATUSES}")
    # The sweeper's look-up of calls waiting past TOOL_RESULTS_TIMEOUT_SECONDS.
    op.create_index('ix_jobs_awaiting_tools', 'jobs', ['finished_at'],
                    postgresql_where="status = 'requires_action' AND continued_by IS NULL")


def downgrade() -> None:
    op.drop_index('ix_jobs_awaiting_tools', table_name='jobs')
    op.execute("UPDATE jobs SET status = 'succeeded' WHERE status = 'requires_action'")
    op.drop_constraint('ck_jobs_status', 'jobs', type_='check')
    op.create_check_constraint('ck_jobs_status', 'jobs', f"status IN {OLD_STATUSES}")
    op.drop_column('jobs', 'continued_by')
    op.drop_column('jobs', 'required_action')
    op.drop_column('conversations', 'tool_choice')
    op.drop_column('conversations', 'tools')
