"""usage: prompt-cache token counts, a per-user daily ledger, per-conversation model

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('conversations', sa.Column('model', sa.Text(), nullable=True))
    for table in ('conversations', 'turns'):
        for column in ('cache_creation_input_tokens', 'cache_read_input_tokens'):
            op.add_column(table, sa.Column(column, sa.BigInteger(), server_default='0', nullable=False))
    op.create_table('usage_daily',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('turns', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_creation_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_read_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'day')
    )


def downgrade() -> None:
    op.drop_table('usage_daily')
    for table in ('conversations', 'turns'):
        for column in ('cache_creation_input_tokens', 'cache_read_input_tokens'):
            op.drop_column(table, column)
    op.drop_column('conversations', 'model')
