"""window start and cost: where each turn's context window began (so a window rebuilt
from the log drops turns where the cached one did), and an estimated cost in USD per
turn, conversation and day

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COST = sa.Numeric(18, 8)


def upgrade() -> None:
    op.add_column('turns', sa.Column('window_start', sa.Integer(), nullable=True))
    for table in ('turns', 'conversations', 'usage_daily'):
        op.add_column(table, sa.Column('cost_usd', COST, server_default='0', nullable=False))


def downgrade() -> None:
    for table in ('usage_daily', 'conversations', 'turns'):
        op.drop_column(table, 'cost_usd')
    op.drop_column('turns', 'window_start')
