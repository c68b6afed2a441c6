"""Extended thinking: a conversation's (or one message's) setting, checked against what the
model accepts, and turned into the request's `thinking`, `output_config.effort` and
`max_tokens`.

A setting is `{"type": "enabled", "budget_tokens": n}` (a fixed budget, the older models),
`{"type": "adaptive"}` (the model decides how much to think, the newer ones), or
`{"type": "disabled"}`; either kind may add `"effort": "low" | ... | "max"`. What a model
accepts comes from the Models API's `capabilities` (`thinking.types`, `effort`); Bedrock
lists no capabilities, so there the documented rule by model generation stands in.

The budget comes on top of MAX_TOKENS, so turning thinking on never shortens the visible
answer: a request asks for MAX_TOKENS + budget_tokens (adaptive: + ADAPTIVE_ROOM_TOKENS),
which must fit the model's own max_tokens. Thinking tokens are output tokens: they are in
`output_tokens` and priced as output (shared/pricing.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("enabled", "adaptive", "disabled")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
MIN_BUDGET_TOKENS = 1024  # the API's floor for budget_tokens
ADAPTIVE_ROOM_TOKENS = 16_000  # max_tokens added for adaptive thinking, beyond MAX_TOKENS
DEFAULT_MODEL_MAX_TOKENS = 64_000  # a model's max_tokens when its provider does not say


class ThinkingRefused(ValueError):
    """A thinking setting this model or provider does not take; the message says why."""


@dataclass(frozen=True)
class ThinkingSupport:
    """What a model accepts: thinking types, effort levels and its largest max_tokens."""
    types: frozenset[str]
    efforts: frozenset[str]
    max_tokens: int | None = None

    def describe(self) -> dict:
        return {"types": sorted(self.types - {"disabled"}), "efforts": [e for e in EFFORTS if e in self.efforts]}


def support_from_capabilities(capabilities, max_tokens: int | None) -> ThinkingSupport | None:
    """From the Models API's `capabilities` (the SDK's object); None when it sent none."""
    if capabilities is None:
        return None
    types = capabilities.thinking.types
    kinds = {kind for kind in KINDS if getattr(types, kind, None) is not None and getattr(types, kind).supported}
    if not capabilities.thinking.supported:
        kinds &= {"disabled"}
    effort = capabilities.effort
    efforts = {level for level in EFFORTS if effort.supported and getattr(effort, level, None) is not None
               and getattr(effort, level).supported}
    return ThinkingSupport(frozenset(kinds), frozenset(efforts), max_tokens)


_VERSION = re.compile(r"claude-(?:(\d+)-(\d)-[a-z]+|[a-z]+-(\d+)(?:-(\d)(?!\d))?)")


def bedrock_support(model_id: str) -> ThinkingSupport:
    """The extended-thinking docs' rule by generation: no thinking before 3.7, a fixed budget
    up to 4.5, both kinds on 4.6, adaptive only from 4.7 on; effort from 4.6 on."""
    match = _VERSION.search(model_id)
    if not match:
        return ThinkingSupport(frozenset({"disabled"}), frozenset())
    major, minor = (int(match[1]), int(match[2])) if match[1] else (int(match[3]), int(match[4] or 0))
    version = (major, minor)
    kinds = {"disabled"}
    if (3, 7) <= version <= (4, 6):
        kinds.add("enabled")
    if version >= (4, 6):
        kinds.add("adaptive")
    efforts = {"low", "medium", "high", "max"} if version >= (4, 6) else set()
    return ThinkingSupport(frozenset(kinds), frozenset(efforts))


def check_setting(setting: dict | None, model: str, support: ThinkingSupport | None, max_tokens: int) -> dict | None:
    """The setting as stored (None for off), or ThinkingRefused saying why this model cannot
    take it. `support` None (the provider's list could not be read) checks only the API's own
    rules; the model then answers for itself when the turn runs."""
    if setting is None:
        return None
    kind, effort = setting.get("type"), setting.get("effort")
    if kind not in KINDS:
        raise ThinkingRefused(f"thinking.type: one of {', '.join(KINDS)}.")
    if effort is not None and effort not in EFFORTS:
        raise ThinkingRefused(f"thinking.effort: one of {', '.join(EFFORTS)}.")
    budget = setting.get("budget_tokens")
    if kind == "enabled":
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_BUDGET_TOKENS:
            raise ThinkingRefused(f"thinking.budget_tokens: an integer of at least {MIN_BUDGET_TOKENS} is required "
                                  "with type enabled.")
    elif budget is not None:
        raise ThinkingRefused("thinking.budget_tokens: only with type enabled (adaptive thinking sets its own).")
    if support is not None:
        if kind not in support.types:
            offered = support.describe()["types"]
            raise ThinkingRefused(f"thinking: model {model!r} does not support thinking type {kind!r}"
                                  + (f"; it takes {' or '.join(offered)}." if offered else
                                     "; it does not think (choose another model)."))
        if effort is not None and effort not in support.efforts:
            raise ThinkingRefused(f"thinking.effort: model {model!r} does not support effort {effort!r}"
                                  + (f"; it takes {', '.join(support.describe()['efforts'])}." if support.efforts
                                     else "; it takes none."))
    ceiling = (support.max_tokens if support and support.max_tokens else DEFAULT_MODEL_MAX_TOKENS)
    if kind == "enabled" and max_tokens + budget > ceiling:
        raise ThinkingRefused(f"thinking.budget_tokens: MAX_TOKENS ({max_tokens}) + budget_tokens ({budget}) passes "
                              f"model {model!r}'s max_tokens ({ceiling}); at most {ceiling - max_tokens}.")
    if kind == "disabled" and effort is None:
        return {"type": "disabled"}
    return {"type": kind, **({"budget_tokens": budget} if kind == "enabled" else {}),
            **({"effort": effort} if effort else {})}


def request_parts(setting: dict | None, max_tokens: int, support_ceiling: int | None = None
                  ) -> tuple[dict | None, str | None, int]:
    """(thinking parameter, effort, max_tokens) for a request with this setting."""
    if not setting:
        return None, None, max_tokens
    kind, effort = setting["type"], setting.get("effort")
    if kind == "enabled":
        return {"type": "enabled", "budget_tokens": setting["budget_tokens"]}, effort, max_tokens + setting["budget_tokens"]
    if kind == "adaptive":
        ceiling = support_ceiling or DEFAULT_MODEL_MAX_TOKENS
        return {"type": "adaptive"}, effort, min(ceiling, max_tokens + ADAPTIVE_ROOM_TOKENS)
    return None, effort, max_tokens  # disabled: the API's default, so nothing is sent but the effort


def thinks(setting: dict | None) -> bool:
    return bool(setting) and setting.get("type") in ("enabled", "adaptive")
