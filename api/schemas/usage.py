"""Tokens and cost, per conversation, job and day."""
from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from api.schemas.base import Strict

class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = Field(None, description="estimated from these tokens and the model's prices")
    thinking_tokens: int | None = Field(None, description="of output_tokens (priced as output), those spent "
                                        "thinking, when the provider says")


def _iso_day(value: object) -> object:
    """YYYY-MM-DD and nothing else: pydantic alone also reads `0` as 1970-01-01."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), WithJsonSchema({"type": "string", "format": "date"})]


class UsageQuery(Strict):
    from_: Day | None = Field(None, alias="from", description="first UTC day, YYYY-MM-DD (default: 30 days before `to`)")
    to: Day | None = Field(None, description="last UTC day, inclusive, YYYY-MM-DD (default: today)")


class UsageDay(BaseModel):
    day: str
    turns: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float = Field(description="estimated from the tokens and each model's prices")


class UsageReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    totals: UsageDay
    days: list[UsageDay]
