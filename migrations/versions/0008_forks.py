"""forks: a conversation may be a fork of another at a turn, its log objects copied after
the fork is made; a turn row of a fork keeps the job that wrote it, so a job id is unique
per conversation instead of overall

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: a fork outlives the conversation it came from.
    op.add_column('conversations', sa.Column('forked_from_id', sa.UUID(), nullable=True))
    op.add_column('conversations', sa.Column('forked_from_turn', sa.Integer(), nullable=True))
    op.add_column('conversations', sa.Column('log_copy_pending', sa.Boolean(), server_default='false',
                                             nullable=False))
    op.create_index('ix_conversations_forks', 'conversations', ['forked_from_id', 'created_at', 'conversation_id'],
                    postgresql_where=sa.text('forked_from_id IS NOT NULL'))
    op.create_index('ix_conversations_log_copy_pending', 'conversations', ['created_at'],
                    postgresql_where=sa.text('log_copy_pending'))
    op.drop_constraint('turns_job_id_key', 'turns', type_='unique')
    op.create_unique_constraint('uq_turns_job_conversation', 'turns', ['job_id', 'conversation_id'])


def downgrade() -> None:
    # Fails while forks share job ids with their parents, as it should: delete the forks first.
    op.drop_constraint('uq_turns_job_conversation', 'turns', type_='unique')
    op.create_unique_constraint('turns_job_id_key', 'turns', ['job_id'])
    op.drop_index('ix_conversations_log_copy_pending', table_name='conversations')
    op.drop_index('ix_conversations_forks', table_name='conversations')
    op.drop_column('conversations', 'log_copy_pending')
    op.drop_column('conversations', 'forked_from_turn')
    op.drop_column('conversations', 'forked_from_id')
