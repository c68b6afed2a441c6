"""conversation summary: CONTEXT_STRATEGY=summarize keeps a rolling summary of the
turns that fell out of the context window

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('conversations', sa.Column('summary', sa.Text(), nullable=True))
    op.add_column('conversations', sa.Column('summary_seq', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('conversations', 'summary_seq')
    op.drop_column('conversations', 'summary')
