"""shared/pricing.py: a price for every model the SDK lists, Bedrock ids included, and
the offline model's cache minimums for the same ids."""
from __future__ import annotations

import typing
from decimal import Decimal

import pytest
from anthropic.types import Model

from offline_model.wire import DEFAULT_MIN_CACHEABLE_TOKENS, min_cacheable_tokens
from shared.config import Settings
from shared.pricing import PRICES, canonical, cost_usd, price_of

SDK_MODELS = [m for m in typing.get_args(typing.get_args(Model)[0])]


@pytest.mark.parametrize("model", SDK_MODELS)
def test_every_model_the_sdk_lists_has_a_price_and_a_cache_minimum(model):
    assert canonical(model) in PRICES
    price = price_of(model)
    assert price.cache_read < price.input < price.cache_write_5m < price.cache_write_1h
    assert min_cacheable_tokens(model) == price.min_cacheable_tokens  # Parley and the offline model agree


@pytest.mark.parametrize("bedrock_id, model", [("global.anthropic.claude-sonnet-5-5", "claude-sonnet-5-5"),
                                               ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
                                               ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5")])
def test_bedrock_ids_are_priced_as_their_model(bedrock_id, model):
    assert canonical(bedrock_id) == model and price_of(bedrock_id) == PRICES[model]
    assert min_cacheable_tokens(bedrock_id) == PRICES[model].min_cacheable_tokens


def test_a_turn_costs_its_tokens_at_the_ttls_write_price():
    usage = {"input_tokens": 1_000, "output_tokens": 500, "cache_creation_input_tokens": 400,
             "cache_read_input_tokens": 8_000}
    # Sonnet 4.5: $3 in, $15 out, $3.75 / $6 a cached write (5m / 1h), $0.30 a read, per million
    assert cost_usd("claude-sonnet-4-5", usage) == Decimal("0.0144")  # 3,000 + 7,500 + 1,500 + 2,400 micro-dollars
    assert cost_usd("claude-sonnet-4-5", usage, ttl="1h") == Decimal("0.0153")


def test_unknown_models_get_the_default_and_settings_can_price_them():
    assert price_of("claude-next-9") == PRICES["claude-sonnet-5-5"]
    assert min_cacheable_tokens("claude-next-9") == DEFAULT_MIN_CACHEABLE_TOKENS
    prices = '{"claude-next-9": {"input": 1, "output": 4, "cache_read": 0.05}}'
    price = price_of("claude-next-9", Settings(_env_file=None, model_prices_json=prices).model_prices_json)
    assert (price.input, price.output, price.cache_write_5m, price.cache_write_1h, price.cache_read) == (1, 4, 1.25, 2, 0.05)


@pytest.mark.parametrize("raw", ['[1]', '{"m": {"input": 1}}', '{"m": {"input": 1, "output": 2, "colour": 3}}', "{"])
def test_bad_model_prices_json_is_refused_at_start_up(raw):
    with pytest.raises(ValueError, match="model_prices_json"):
        Settings(_env_file=None, model_prices_json=raw)


def test_pricing_a_reply_counts_its_cache_tokens_per_model():
    from types import SimpleNamespace

    from prometheus_client import REGISTRY

    from shared.model import ModelReply
    from worker.usage import priced

    def counted(kind: str) -> float:
        return REGISTRY.get_sample_value("parley_prompt_cache_tokens_total",
                                         {"model": "claude-opus-4-8", "kind": kind}) or 0.0

    before = counted("read"), counted("write")
    reply = ModelReply("hi", "claude-opus-4-8", input_tokens=10, output_tokens=5, cache_creation_input_tokens=300,
                       cache_read_input_tokens=9_000)
    services = SimpleNamespace(settings=Settings(_env_file=None, prompt_cache_ttl="1h"))
    # $5 in, $25 out, $10 a 1h write, $0.50 a read: 50 + 125 + 3,000 + 4,500 micro-dollars
    assert priced(services, reply) == Decimal("0.007675")
    assert (counted("read"), counted("write")) == (before[0] + 9_000, before[1] + 300)
