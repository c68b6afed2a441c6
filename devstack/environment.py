"""The stack's environment, built one way for every caller: the variables its processes
get (this process's, without the ones the stack sets itself, plus the caller's own),
the `Settings` those variables make, the database migrated to head, and where the
configured provider goes when it has nowhere real to go (the offline model).
"""
from __future__ import annotations

import logging
import os
import sys

from shared.config import ROOT, Settings

# Variables a stack sets itself: the developer's own must not leak into it.
SERVICE_VARS = ("ANTHROPIC_", "DATABASE_", "REDIS_", "STORAGE_")


def stack_env(drop: tuple[str, ...] = SERVICE_VARS, **values: str) -> dict:
    """This process's environment without the variables starting with `drop`, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(values)
    return env


def settings_for(env: dict) -> Settings:
    """The settings a process started with `env` reads (no .env file)."""
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})


def migrate(url: str, echo: bool = False) -> None:
    """The database at `url` upgraded to head. `echo` prints alembic's progress on stderr
    as `alembic upgrade head` does (`make run` shows it), without alembic configuring
    this process's logging."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes.update(url=url, configure_logger=False)
    if not echo:
        command.upgrade(config, "head")
        return
    logger = logging.getLogger("alembic")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))  # alembic.ini's format
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        command.upgrade(config, "head")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def offline_model_env(settings: Settings, url: str, aws_credentials: bool) -> dict:
    """Settings that point the configured provider at the offline model, when it has
    nowhere real to go: the Anthropic API without a key or base URL, or Bedrock
    without an endpoint and without AWS credentials. Empty if it has."""
    if settings.llm_provider == "bedrock":
        if settings.bedrock_endpoint_url or aws_credentials:
            return {}
        # botocore signs every request; the offline model ignores the signature.
        return {"BEDROCK_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "offline", "AWS_SECRET_ACCESS_KEY": "offline"}
    if settings.anthropic_api_key or settings.anthropic_base_url:
        return {}
    return {"ANTHROPIC_BASE_URL": url}


def aws_credentials_found() -> bool:
    import boto3
    return boto3.Session().get_credentials() is not None
