"""A thinking setting checked against what a model takes, and the request it becomes."""
from __future__ import annotations

import pytest
from anthropic._models import construct_type
from anthropic.types import ModelInfo

from offline_model.catalog import capabilities
from shared.thinking import (ADAPTIVE_ROOM_TOKENS, ThinkingRefused, ThinkingSupport, bedrock_support, check_setting,
                             request_parts, support_from_capabilities)

ADAPTIVE_ONLY = ThinkingSupport(frozenset({"adaptive", "disabled"}), frozenset({"low", "high", "max"}), 64_000)
BUDGET_ONLY = ThinkingSupport(frozenset({"enabled", "disabled"}), frozenset(), 8_000)


def test_capabilities_are_read_from_the_models_api_as_the_sdk_parses_them():
    info = construct_type(type_=ModelInfo, value={
        "type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-01T00:00:00Z", "lifecycle": "active", "max_tokens": 64000,
        "capabilities": capabilities("claude-haiku-4-5")})
    support = support_from_capabilities(info.capabilities, info.max_tokens)
    assert support == ThinkingSupport(frozenset({"enabled", "disabled"}), frozenset(), 64000)
    assert support.describe() == {"types": ["enabled"], "efforts": []}
    assert support_from_capabilities(None, None) is None


@pytest.mark.parametrize("setting, support, says", [
    ({"type": "enabled", "budget_tokens": 2048}, ADAPTIVE_ONLY, "does not support thinking type 'enabled'"),
    ({"type": "adaptive"}, BUDGET_ONLY, "it takes enabled"),
    ({"type": "adaptive", "effort": "xhigh"}, ADAPTIVE_ONLY, "it takes low, high, max"),
    ({"type": "enabled", "budget_tokens": 1000}, BUDGET_ONLY, "at least 1024"),
    ({"type": "enabled", "budget_tokens": 7000}, BUDGET_ONLY, "at most 6976"),
    ({"type": "adaptive", "budget_tokens": 2000}, ADAPTIVE_ONLY, "only with type enabled"),
    ({"type": "adaptive"}, ThinkingSupport(frozenset({"disabled"}), frozenset()), "it does not think"),
])
def test_what_the_model_does_not_take_is_refused_with_the_reason(setting, support, says):
    with pytest.raises(ThinkingRefused, match=says):
        check_setting(setting, "claude-x", support, max_tokens=1024)


def test_a_setting_the_model_takes_is_kept_as_given():
    assert check_setting({"type": "adaptive", "effort": "max"}, "m", ADAPTIVE_ONLY, 1024) == {"type": "adaptive",
                                                                                               "effort": "max"}
    assert check_setting({"type": "enabled", "budget_tokens": 6976}, "m", BUDGET_ONLY, 1024) == {
        "type": "enabled", "budget_tokens": 6976}
    assert check_setting({"type": "disabled"}, "m", BUDGET_ONLY, 1024) == {"type": "disabled"}
    assert check_setting(None, "m", BUDGET_ONLY, 1024) is None
    # Unknown capabilities (the list could not be read): only the API's own rules apply.
    assert check_setting({"type": "enabled", "budget_tokens": 2048}, "m", None, 1024)["budget_tokens"] == 2048


def test_the_budget_comes_on_top_of_max_tokens():
    assert request_parts({"type": "enabled", "budget_tokens": 2048}, 1024) == (
        {"type": "enabled", "budget_tokens": 2048}, None, 3072)
    assert request_parts({"type": "adaptive", "effort": "low"}, 1024) == (
        {"type": "adaptive"}, "low", 1024 + ADAPTIVE_ROOM_TOKENS)
    assert request_parts({"type": "adaptive"}, 1024, support_ceiling=4096)[2] == 4096
    assert request_parts({"type": "disabled", "effort": "low"}, 1024) == (None, "low", 1024)
    assert request_parts(None, 1024) == (None, None, 1024)


@pytest.mark.parametrize("model_id, kinds", [
    ("anthropic.claude-3-5-haiku-20241022-v1:0", set()),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", {"enabled"}),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", {"enabled"}),
    ("global.anthropic.claude-sonnet-4-6", {"enabled", "adaptive"}),
    ("global.anthropic.claude-opus-4-8", {"adaptive"}),
    ("global.anthropic.claude-sonnet-5-5", {"adaptive"}),
    ("global.anthropic.claude-sonnet-5", {"adaptive"}),
])
def test_bedrock_thinking_by_generation(model_id, kinds):
    assert bedrock_support(model_id).types == frozenset(kinds | {"disabled"})


def test_the_offline_catalog_agrees_with_the_bedrock_rule():
    for model_id in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-8",
                     "claude-sonnet-5-5"):
        types = capabilities(model_id)["thinking"]["types"]
        offered = {kind for kind in ("enabled", "adaptive") if types[kind]["supported"]}
        assert bedrock_support(f"global.anthropic.{model_id}").types - {"disabled"} == offered, model_id


def test_on_bedrock_the_catalog_answers_without_asking_aws():
    from shared.catalog import ModelCatalog
    from shared.config import Settings

    settings = Settings(_env_file=None, llm_provider="bedrock",
                        bedrock_model_id="global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    support = ModelCatalog(settings).thinking(settings.default_model)
    with pytest.raises(ThinkingRefused, match="it takes enabled"):
        check_setting({"type": "adaptive"}, settings.default_model, support, settings.max_tokens)
