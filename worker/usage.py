"""Counting what the model read and wrote: the per-user daily ledger and the token quota."""
from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import redis
from sqlalchemy.orm import Session

from shared.bootstrap import Services
from shared.jobs.sql import ADD_USAGE
from shared.pricing import cost_usd
from shared.model import ModelReply
from shared.quotas import TokenQuota
from shared.server_tools import server_tools_cost
from worker import metrics

log = logging.getLogger(__name__)

def add_daily_usage(session: Session, user_id: uuid.UUID, reply: ModelReply, turns: int,
                    cost: Decimal = Decimal(0)) -> None:
    """Add a model call to the user's ledger for today; `turns` is 1 for a reply, 0 for a summary."""
    session.execute(ADD_USAGE, {"user_id": user_id, "turns": turns, "cost_usd": cost, **reply.usage})


def priced(services: Services, reply: ModelReply) -> Decimal:
    """What a model call cost (USD, estimated from shared/pricing.py), its cache tokens counted
    in the metrics. Cache writes are priced at PROMPT_CACHE_TTL's rate: every breakpoint asks for it."""
    settings = services.settings
    metrics.prompt_cache(reply.model, reply.cache_read_input_tokens, reply.cache_creation_input_tokens)
    return (cost_usd(reply.model, reply.usage, settings.prompt_cache_ttl, settings.model_prices_json)
            + server_tools_cost(reply.server_tool_use))


def count_quota(services: Services, user_id: uuid.UUID, reply: ModelReply) -> None:
    """MODEL_TOKENS_PER_DAY counts everything the model read or wrote."""
    if not services.settings.model_tokens_per_day:
        return
    try:
        TokenQuota(services.redis, services.settings.model_tokens_per_day).record(
            user_id, reply.prompt_tokens + reply.output_tokens)
    except redis.RedisError as error:
        log.warning("user %s: token quota not counted, Redis failed: %s", user_id, error)
