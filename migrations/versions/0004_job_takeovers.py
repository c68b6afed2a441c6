"""job takeovers: how often a running job was taken over after its worker died

`attempts` counts every claim, hand-backs after a backing service failed
included; MAX_JOB_ATTEMPTS limits deaths only, so it needs its own count.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('takeovers', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('jobs', 'takeovers')
