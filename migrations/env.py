"""Alembic environment: the database URL comes from Parley's settings."""
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from shared.local_stack import tool_settings
from shared.models import Base

if context.config.config_file_name and context.config.attributes.get("configure_logger", True):
    fileConfig(context.config.config_file_name)

# By hand (`alembic upgrade head`): DATABASE_URL, or that of a `make run` running beside it.
url = context.config.attributes.get("url") or tool_settings("database_url").sqlalchemy_url
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
