"""What a model call costs: a price table per model, and the minimum prompt length
each model will cache.

Prices are USD per million tokens, as Anthropic publishes them (platform.claude.com,
"Pricing"; checked 2026-12). A cache write costs 1.25x the input price for a 5-minute
entry and 2x for a 1-hour one; a cache read 0.1x or less. MODEL_PRICES_JSON adds models
or overrides these, e.g. {"claude-new-6": {"input": 2, "output": 10, "cache_write_5m": 2.5,
"cache_write_1h": 4, "cache_read": 0.2, "min_cacheable_tokens": 1024}}. A model found in
neither is priced as DEFAULT_MODEL (a Sonnet): an estimate beats none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from decimal import Decimal
from functools import lru_cache

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    min_cacheable_tokens: int = 1024  # a shorter prefix is not cached at all, whatever it is marked

    def cost(self, usage: dict, ttl: str = "5m") -> Decimal:
        """USD for one call's usage (input_tokens, output_tokens, cache_creation_input_tokens,
        cache_read_input_tokens); cache writes at the price of the entries' `ttl`. Extended
        thinking is billed as output: its tokens are inside output_tokens, so they are priced here."""
        write = self.cache_write_1h if ttl == "1h" else self.cache_write_5m
        parts = ((usage.get("input_tokens", 0), self.input), (usage.get("output_tokens", 0), self.output),
                 (usage.get("cache_creation_input_tokens", 0), write),
                 (usage.get("cache_read_input_tokens", 0), self.cache_read))
        return sum((Decimal(tokens) * Decimal(str(price)) for tokens, price in parts), Decimal(0)) / MILLION


def _family(input_: float, output: float, read: float, minimum: int) -> Price:
    return Price(input_, output, input_ * 1.25, input_ * 2, read, minimum)


# Ids as anthropic.types.Model lists them (SDK 2.10); dated ids share their alias's row.
# Minimum cacheable lengths from Anthropic's prompt-caching guide; where a model is
# newer than the guide's table, its generation's figure (marked "assumed").
PRICES: dict[str, Price] = {
    "claude-fable-5-2": Price(8, 40, 10, 16, 0.20, 512),  # min assumed, as Fable 5
    "claude-mythos-5-2": Price(8, 40, 10, 16, 0.20, 512),  # min assumed
    "claude-fable-5-1": Price(10, 50, 12.5, 20, 0.25, 512),  # min assumed
    "claude-mythos-5-1": Price(10, 50, 12.5, 20, 0.25, 512),  # min assumed
    "claude-fable-5": _family(10, 50, 1.0, 512),
    "claude-mythos-5": _family(10, 50, 1.0, 512),
    "claude-mythos-preview": _family(10, 50, 1.0, 512),  # min assumed
    "claude-opus-5-5": _family(4, 20, 0.20, 512),  # min assumed, as Opus 5
    "claude-sonnet-5-5": _family(2, 10, 0.10, 1024),  # cache reads 0.05x since 2026-10-07; min assumed
    "claude-haiku-5-5": _family(0.10, 0.50, 0.01, 2048),  # prompts <= 100k tokens; min assumed
    "claude-opus-5": _family(5, 25, 0.50, 512),
    "claude-sonnet-5": _family(2, 10, 0.20, 1024),
    "claude-opus-4-8": _family(5, 25, 0.50, 1024),
    "claude-opus-4-7": _family(5, 25, 0.50, 2048),
    "claude-opus-4-6": _family(5, 25, 0.50, 4096),
    "claude-sonnet-4-6": _family(3, 15, 0.30, 1024),
    "claude-opus-4-5": _family(5, 25, 0.50, 4096),
    "claude-haiku-4-5": _family(1, 5, 0.10, 4096),
    "claude-sonnet-4-5": _family(3, 15, 0.30, 1024),
    "claude-opus-4-1": _family(15, 75, 1.50, 1024),
}
DEFAULT_MODEL = "claude-sonnet-5-5"


@lru_cache(maxsize=8)
def _overrides(raw: str) -> dict[str, Price]:
    if not raw.strip():
        return {}
    names = {f.name for f in fields(Price)}
    table = json.loads(raw)
    if not isinstance(table, dict):
        raise ValueError("MODEL_PRICES_JSON: must be a JSON object of model id to prices")
    prices = {}
    for model, row in table.items():
        if not isinstance(row, dict) or not {"input", "output"} <= set(row) or set(row) - names:
            raise ValueError(f"MODEL_PRICES_JSON: {model}: needs input and output, may have "
                             f"{', '.join(sorted(names - {'input', 'output'}))}")
        base = _family(float(row["input"]), float(row["output"]), float(row["input"]) * 0.1,
                       int(row.get("min_cacheable_tokens", 1024)))
        prices[model] = Price(**{**base.__dict__, **row})
    return prices


def canonical(model: str) -> str:
    """A Bedrock id or profile (`global.anthropic.claude-sonnet-5-5`, `anthropic.claude-sonnet-4-5-
    20250929-v1:0`) or a dated id as the Anthropic alias it is; unknown ids unchanged."""
    found = [known for known in PRICES if known in model]
    return max(found, key=len) if found else model


def price_of(model: str, overrides: str = "") -> Price:
    """The price row for `model`; `overrides` is MODEL_PRICES_JSON."""
    extra = _overrides(overrides)
    if model in extra:
        return extra[model]
    name = canonical(model)
    return extra.get(name) or PRICES.get(name) or PRICES[DEFAULT_MODEL]


def cost_usd(model: str, usage: dict, ttl: str = "5m", overrides: str = "") -> Decimal:
    """The estimated cost of one call, rounded to the stored precision (1e-8 USD)."""
    return price_of(model, overrides).cost(usage, ttl).quantize(Decimal("1e-8"))
