"""The one place that assembles real dependencies. API, worker and tests call it."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.cache import WindowCache, make_redis
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import JobEvents
from shared.files import FileResolver
from shared.model import AnthropicProvider, BedrockProvider, ModelProvider, RetryingProvider, RetryPolicy
from shared.storage import LogStore, make_log_store


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    windows: WindowCache
    events: JobEvents
    store: LogStore
    provider: ModelProvider | None

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


def storage_url(settings: Settings) -> str:
    return settings.storage_url or str(settings.var_dir / "storage")


def bootstrap(settings: Settings, *, provider: ModelProvider | None = None, with_model: bool = False,
              pool_size: int = 10, max_overflow: int | None = None) -> Services:
    """Build the services. The API passes with_model=False: it never calls the model."""
    engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size, max_overflow=max_overflow)
    client = make_redis(settings.require("redis_url"))
    sessions = make_sessions(engine)
    store = make_log_store(storage_url(settings), settings.s3_endpoint_url, settings.s3_credentials)
    if provider is None and with_model:
        provider = make_provider(settings, FileResolver(sessions, store))
    return Services(
        settings=settings, engine=engine, sessions=sessions, redis=client,
        windows=WindowCache(client, settings.window_cache_ttl_seconds),
        events=JobEvents(client, settings.events_ttl_seconds),
        store=store,
        provider=provider,
    )


def make_provider(settings: Settings, attachments: FileResolver | None = None) -> ModelProvider:
    """The configured provider, wrapped in the one retry layer; `attachments` reads the
    bytes of files a message references, at request time."""
    if settings.llm_provider == "bedrock":
        inner = BedrockProvider(settings.aws_region, settings.bedrock_endpoint_url, settings.model_timeout_seconds,
                                settings.prompt_cache_ttl, attachments, connections=settings.worker_concurrency)
    else:
        inner = AnthropicProvider(settings.anthropic_api_key or "offline", settings.anthropic_base_url,
                                  settings.model_timeout_seconds, settings.prompt_cache_ttl, attachments,
                                  settings.anthropic_files_api, connections=settings.worker_concurrency)
    return RetryingProvider(inner, RetryPolicy(max_retries=settings.model_max_retries,
                                               budget_seconds=settings.model_retry_budget_seconds,
                                               base_seconds=settings.model_retry_base_seconds))
