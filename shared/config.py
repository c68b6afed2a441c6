"""Settings, read from the environment once and validated at start-up.

A bad value stops the process with one line naming the variable
(see `load_settings`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
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
    # The bucket's own credentials (MinIO's in compose), so they never reach Bedrock;
    # unset, S3 uses the AWS credential chain like everything else.
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    var_dir: Path = ROOT / "var"

    # Model.
    llm_provider: Literal["anthropic", "bedrock"] = "anthropic"
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    # The newest Sonnet the pinned SDK and the Models API know; checked against the
    # provider's model list at start-up (shared/catalog.py). How to move: README, "Models".
    model: str = "claude-sonnet-5-5"
    aws_region: str = "us-east-1"
    bedrock_model_id: str = "global.anthropic.claude-sonnet-5-5"  # a cross-region inference profile
    bedrock_endpoint_url: str | None = None
    allowed_models: str = ""  # comma-separated ids a conversation may choose besides the default
    # Ask the provider's model list at start-up whether MODEL and ALLOWED_MODELS exist and are not retired.
    check_models: bool = True
    max_tokens: int = Field(1024, ge=1, le=64000)
    temperature: float | None = Field(None, ge=0, le=1)  # Bedrock only; see _no_sampling_on_anthropic
    model_timeout_seconds: float = Field(120.0, gt=0, le=600)
    model_max_retries: int = Field(4, ge=0, le=10)
    model_retry_budget_seconds: float = Field(300.0, ge=0, le=3600)
    model_retry_base_seconds: float = Field(1.0, gt=0, le=60)  # backoff before the first retry; doubles
    default_system_prompt: str = "You are a helpful assistant."

    # Memory and limits.
    # 32,000: with the window read from the prompt cache, a turn at a full 32k window costs about a
    # third of what an 8k one did before (bench scenario 7; README, "Long conversations").
    max_context_tokens: int = Field(32_000, ge=16, le=1_000_000)
    # Past MAX_CONTEXT_TOKENS the window drops its oldest turns in one step down to this share
    # of it, so its head (and Claude's cached prefix) stays the same for many turns.
    window_low_water: float = Field(0.6, ge=0, le=1)
    # How long Claude keeps the conversation's prefix cached: 5m (writes cost 1.25x input) or
    # 1h (2x), each refreshed by every read; 1h pays when people pause longer than 5 minutes.
    prompt_cache_ttl: Literal["5m", "1h"] = "5m"
    # Prices (USD per million tokens) for models shared/pricing.py does not know, or to
    # override it: {"model-id": {"input": 3, "output": 15, "cache_write_5m": 3.75, ...}}.
    model_prices_json: str = ""
    # What happens to messages that fall out of the window: dropped, or folded into a
    # rolling summary (made by the model) that is sent ahead of the window.
    context_strategy: Literal["truncate", "summarize"] = "truncate"
    summary_max_tokens: int = Field(512, ge=16, le=8192)
    max_message_chars: int = Field(32_000, ge=1, le=1_000_000)
    max_request_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Attachments (shared/media.py), capped by Claude's documented limits. Images: 8000 x 8000 px
    # and 5 MB each on the API (vision guide, "Basics and limits"; Bedrock's Converse: 3.75 MB,
    # applied under LLM_PROVIDER=bedrock, see `upload_limits`). PDFs: 100 pages and a 32 MB
    # request (PDF support guide, "PDF requirements"); base64 adds a third, so 24 MB of PDF
    # fits one request (Bedrock: 4.5 MB a document). Text: Bedrock's 4.5 MB a document.
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1, le=5 * 1024 * 1024)
    max_image_side_px: int = Field(8000, ge=1, le=8000)
    max_pdf_bytes: int = Field(24 * 1024 * 1024, ge=1, le=32 * 1024 * 1024)
    max_pdf_pages: int = Field(100, ge=1, le=100)
    max_text_file_bytes: int = Field(4_500_000, ge=1, le=32 * 1024 * 1024)
    # Per message: Bedrock's Converse takes at most 20 images and 5 documents a request.
    max_attachments_per_message: int = Field(20, ge=0, le=100)
    # Send images and PDFs to the Anthropic API by a Files API id, uploaded once per file,
    # instead of their bytes in every request (beta: files-api-2025-04-14).
    anthropic_files_api: bool = False
    max_name_chars: int = Field(200, ge=1, le=10_000)
    max_system_chars: int = Field(20_000, ge=0, le=1_000_000)
    max_page_size: int = Field(100, ge=1, le=1000)
    max_wait_seconds: float = Field(30.0, ge=0, le=300)
    chat_wait_seconds: float = Field(25.0, ge=0, le=300)
    window_cache_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)

    # Abuse limits; 0 turns each off.
    rate_limit_per_minute: int = Field(600, ge=0, le=1_000_000)  # requests per API key
    model_tokens_per_day: int = Field(0, ge=0, le=10**12)  # model tokens (in + out) per user, UTC day

    # Jobs.
    job_lease_seconds: int = Field(60, ge=5, le=3600)
    task_soft_time_limit_seconds: int = Field(900, ge=10)
    max_job_attempts: int = Field(3, ge=1, le=100)
    sweep_interval_seconds: float = Field(10.0, gt=0, le=3600)
    queued_grace_seconds: float = Field(30.0, ge=0, le=86400)
    max_jobs_in_flight: int = Field(20, ge=1, le=100_000)  # a user's queued + running jobs
    # Client tools (shared/tools.py): how long a job's tool calls may wait for their results
    # before the sweeper answers them with an error, and how many continuations one user
    # message may have (the last one is asked for an answer without tools).
    tool_results_timeout_seconds: float = Field(3600.0, gt=0, le=30 * 24 * 3600)
    max_tool_rounds: int = Field(10, ge=1, le=1000)
    # Server tools a conversation may opt into (shared/server_tools.py), comma-separated.
    server_tools_allowed: str = "web_search"

    # Delivery: event streams and webhooks.
    events_ttl_seconds: int = Field(3600, ge=1, le=30 * 24 * 3600)  # kept after the job ends
    sse_ping_seconds: float = Field(5.0, gt=0, le=8)  # below the Redis socket timeout (10 s)
    # Open SSE streams plus waiting long-polls of one user, per API process (api/waits.py).
    max_open_streams_per_user: int = Field(500, ge=1, le=1_000_000)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_retry_window_seconds: int = Field(3600, ge=0, le=7 * 24 * 3600)
    webhook_backoff_seconds: float = Field(2.0, gt=0, le=600)  # the first retry's delay; doubles
    webhook_allow_private_addresses: bool = False  # true lets callbacks reach loopback/private hosts
    webhook_proxy_url: str | None = Field(None, pattern=r"^https?://")  # deliveries' only proxy; HTTP(S)_PROXY is not

    # Processes.
    port: int = Field(5000, ge=1, le=65535)
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_max_tasks: int = Field(10_000, ge=1)  # tasks Flower keeps in memory (worker/flower.py)
    # A turn mostly waits on Claude, so one process keeps hundreds of model calls in flight:
    # a thread each, or a greenlet each with `gevent`; threads measured as cheap or cheaper
    # in CPU per turn at 200 in flight (README, Benchmarks).
    worker_pool: Literal["threads", "gevent"] = "threads"
    worker_concurrency: int = Field(200, ge=1, le=1000)  # turns (model calls) in flight per worker process
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Every log line says which process wrote it, as `process`; `make run` names its own
    # (api, worker1, ...): they share its terminal (devstack/supervisor.py).
    process_name: str = Field("", max_length=64)
    # Each worker process serves Prometheus metrics on this port; 0 = off. One port
    # per process: containers each have their own, `make run` counts up from it.
    worker_metrics_port: int = Field(0, ge=0, le=65535)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value and value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://"):]
        return value

    @field_validator("model_prices_json")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        from shared.pricing import price_of

        try:
            price_of("", value)
        except (TypeError, ValueError) as error:  # json's errors are ValueErrors
            raise ValueError(str(error).removeprefix("MODEL_PRICES_JSON: ")) from None
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

    @model_validator(mode="after")
    def _task_outlives_model_calls(self) -> "Settings":
        # A reply's retries and last call; with summarize, one more call (the summary's) before it.
        calls = 2 if self.context_strategy == "summarize" else 1
        longest = self.model_retry_budget_seconds + calls * self.model_timeout_seconds
        if self.task_soft_time_limit_seconds <= longest:
            raise ValueError(f"TASK_SOFT_TIME_LIMIT_SECONDS: must exceed MODEL_RETRY_BUDGET_SECONDS + "
                             f"{calls} × MODEL_TIMEOUT_SECONDS ({longest:g}), the longest a turn's model calls "
                             f"can take")
        return self

    @model_validator(mode="after")
    def _no_sampling_on_anthropic(self) -> "Settings":
        # API version 2026-10-21 (anthropic SDK 2.x) answers 400 to any sampling parameter,
        # so a TEMPERATURE here would fail every turn; say so at start-up instead.
        if self.llm_provider == "anthropic" and self.temperature is not None:
            raise ValueError("TEMPERATURE: the Anthropic API no longer accepts sampling parameters "
                             "(API version 2026-10-21); unset it, or use LLM_PROVIDER=bedrock")
        return self

    @model_validator(mode="after")
    def _s3_credentials_in_pairs(self) -> "Settings":
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            missing = "S3_SECRET_ACCESS_KEY" if self.s3_access_key_id else "S3_ACCESS_KEY_ID"
            raise ValueError(f"{missing}: not set, but its pair is; set both or neither")
        return self

    @property
    def s3_credentials(self) -> tuple[str, str] | None:
        return (self.s3_access_key_id, self.s3_secret_access_key) if self.s3_access_key_id else None

    @property
    def default_model(self) -> str:
        return self.bedrock_model_id if self.llm_provider == "bedrock" else self.model

    @property
    def model_choices(self) -> set[str]:
        return {self.default_model} | {m.strip() for m in self.allowed_models.split(",") if m.strip()}

    @property
    def sqlalchemy_url(self) -> str:
        url = self.require("database_url")
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def upload_limits(self):
        """The attachment caps in force: the settings, lowered to Bedrock's where it is the provider."""
        from shared.media import BEDROCK_LIMITS, Limits

        caps = Limits(self.max_image_bytes, self.max_image_side_px, self.max_pdf_bytes, self.max_pdf_pages,
                      self.max_text_file_bytes)
        return caps.within(BEDROCK_LIMITS) if self.llm_provider == "bedrock" else caps

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
    if not first["loc"]:  # a check across settings names them in its message
        return str(first["msg"]).removeprefix("Value error, ")
    return f"{str(first['loc'][0]).upper()}: {str(first['msg']).removeprefix('Value error, ')}"


def load_settings(**overrides) -> Settings:
    """Read settings; on a bad value print one line and exit(2)."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        sys.stderr.write(f"config error: {describe(error)}\n")
        raise SystemExit(2) from None
