"""The one place that assembles real dependencies. API, worker and tests call it."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.cache import JobNotifier, WindowCache, make_redis
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.providers import AnthropicProvider, ModelProvider
from shared.storage import LogStore, make_log_store


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    windows: WindowCache
    notifier: JobNotifier
    store: LogStore
    provider: ModelProvider | None

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


def storage_url(settings: Settings) -> str:
    return settings.storage_url or str(settings.var_dir / "storage")


def bootstrap(settings: Settings, *, provider: ModelProvider | None = None, with_model: bool = False,
              pool_size: int = 10) -> Services:
    """Build the services. The API passes with_model=False: it never calls the model."""
    engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size)
    client = make_redis(settings.require("redis_url"))
    if provider is None and with_model:
        provider = AnthropicProvider(
            api_key=settings.anthropic_api_key or "offline",
            base_url=settings.anthropic_base_url,
            timeout=settings.model_timeout_seconds,
            max_retries=settings.model_max_retries,
        )
    return Services(
        settings=settings, engine=engine, sessions=make_sessions(engine), redis=client,
        windows=WindowCache(client, settings.window_cache_ttl_seconds), notifier=JobNotifier(client),
        store=make_log_store(storage_url(settings), settings.s3_endpoint_url), provider=provider,
    )
