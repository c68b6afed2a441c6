"""turn entry: each turn's log entry kept beside its metadata, so a page of history is
one query (the log in object storage stays the verbatim source of truth)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('turns', sa.Column('entry', JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column('turns', 'entry')
