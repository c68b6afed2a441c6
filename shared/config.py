"""Settings, read from the environment once and validated at start-up.

A bad value stops the process with one line naming the variable
(see `load_settings`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Backing services; unset means the embedded default started by `make run`.
    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None  # defaults to REDIS_URL
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    var_dir: Path = ROOT / "var"

    # Model.
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    model: str = "claude-sonnet-4-5"
    max_tokens: int = Field(1024, ge=1, le=64000)
    model_timeout_seconds: float = Field(120.0, gt=0, le=600)
    model_max_retries: int = Field(2, ge=0, le=10)
    default_system_prompt: str = "You are a helpful assistant."

    # Memory and limits.
    max_context_tokens: int = Field(8000, ge=16, le=1_000_000)
    max_message_chars: int = Field(32_000, ge=1, le=1_000_000)
    max_request_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_name_chars: int = Field(200, ge=1, le=10_000)
    max_system_chars: int = Field(20_000, ge=0, le=1_000_000)
    max_page_size: int = Field(100, ge=1, le=1000)
    max_wait_seconds: float = Field(30.0, ge=0, le=300)
    chat_wait_seconds: float = Field(25.0, ge=0, le=300)
    window_cache_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)

    # Jobs.
    job_lease_seconds: int = Field(60, ge=5, le=3600)
    task_soft_time_limit_seconds: int = Field(900, ge=10)
    max_job_attempts: int = Field(3, ge=1, le=100)
    sweep_interval_seconds: float = Field(10.0, gt=0, le=3600)
    queued_grace_seconds: float = Field(30.0, ge=0, le=86400)

    # Processes.
    port: int = Field(5000, ge=1, le=65535)
    flower_port: int = Field(5555, ge=1, le=65535)
    worker_concurrency: int = Field(16, ge=1, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value and value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://"):]
        return value

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://", "amqp://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("s3://", "file://", "/")):
            raise ValueError("must be s3://bucket/prefix, file:///path or an absolute path")
        if value and value.startswith("s3://") and not value[5:].split("/", 1)[0]:
            raise ValueError("s3:// URL needs a bucket name")
        if value and value.startswith("file://") and urlparse(value).netloc not in ("", "localhost"):
            raise ValueError("file:// URL needs an absolute path (file:///path)")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        url = self.require("database_url")
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.require("redis_url")

    def require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"{name.upper()}: not set (run `make run`, which starts embedded services)")
        return value


class ConfigError(Exception):
    """A setting that is missing or wrong; the message names the variable."""


def describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "settings"
    return f"{name}: {first['msg']}"


def load_settings(**overrides) -> Settings:
    """Read settings; on a bad value print one line and exit(2)."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        sys.stderr.write(f"config error: {describe(error)}\n")
        raise SystemExit(2) from None
