"""Alembic environment: the database URL comes from Parley's settings."""
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from shared.config import load_settings
from shared.models import Base

if context.config.config_file_name and context.config.attributes.get("configure_logger", True):
    fileConfig(context.config.config_file_name)

url = context.config.attributes.get("url") or load_settings().sqlalchemy_url
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
