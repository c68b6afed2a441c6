"""Tool definitions and tool_choice as shared/tools.py checks them, and the window rules
that keep a request with tool calls valid for the Messages API."""
from __future__ import annotations

import pytest

from shared.config import Settings
from shared.model import ModelReply
from shared.tools import MISSING_RESULT, ToolsRefused, check_tool_choice, check_tools, paired, window_for
from shared.jobs import Claim
from worker.tool_turns import job_ending, offered_tools, past_the_guard

CLOCK = {"name": "clock", "description": "The time.", "input_schema": {"type": "object"}}


def test_valid_tools_are_kept_as_the_api_takes_them():
    assert check_tools([CLOCK, {"name": "w-2", "input_schema": {"type": "object", "properties": {}}}]) == \
        [CLOCK, {"name": "w-2", "input_schema": {"type": "object", "properties": {}}}]
    assert check_tools(None) is None


@pytest.mark.parametrize("tools, fragment", [
    ([CLOCK, CLOCK], "defined twice"),
    ([{**CLOCK, "name": "has space"}], "tools.0.name"),
    ([{**CLOCK, "name": "x" * 65}], "tools.0.name"),
    ([{"name": "a"}], "tools.0.input_schema"),
    ([{**CLOCK, "input_schema": {"type": "array"}}], "\"type\": \"object\""),
    ([{**CLOCK, "input_schema": {"type": "object", "properties": {"a": {"type": 5}}}}],
     "tools.0.input_schema['properties']['a']['type']: not a valid JSON Schema"),
    ([{**CLOCK, "input_schema": {"type": "object", "required": "a"}}], "not a valid JSON Schema"),
    ([{**CLOCK, "name": f"t{i}"} for i in range(65)], "at most 64 tools"),
    ([{**CLOCK, "input_schema": {"type": "object", "description": "x" * 70_000}}], "bytes of definitions"),
])
def test_invalid_tools_are_refused_with_where_and_why(tools, fragment):
    with pytest.raises(ToolsRefused, match=None) as refused:
        check_tools(tools)
    assert fragment in str(refused.value)


def test_tool_choice_must_fit_the_tools():
    assert check_tool_choice({"type": "tool", "name": "clock"}, [CLOCK]) == {"type": "tool", "name": "clock"}
    for choice, tools, fragment in [({"type": "tool", "name": "nope"}, [CLOCK], "'nope' is not one of"),
                                    ({"type": "auto"}, None, "only with tools"),
                                    ({"type": "auto", "name": "clock"}, [CLOCK], "only with type tool"),
                                    ({"type": "sometimes"}, [CLOCK], "tool_choice.type")]:
        with pytest.raises(ToolsRefused) as refused:
            check_tool_choice(choice, tools)
        assert fragment in str(refused.value)


CALL = {"type": "tool_use", "id": "t1", "name": "clock", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "t1", "content": "noon"}


def test_an_unanswered_call_gets_an_error_result_before_the_next_message():
    messages = [{"role": "user", "content": "time?"}, {"role": "assistant", "content": [CALL]},
                {"role": "user", "content": "never mind"}]
    fixed = paired(messages)
    assert fixed[2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": MISSING_RESULT,
                                    "is_error": True}, {"type": "text", "text": "never mind"}]
    assert messages[2]["content"] == "never mind"  # the window itself is not changed


def test_results_whose_call_left_the_window_are_dropped():
    fixed = paired([{"role": "user", "content": [RESULT, {"type": "text", "text": "and?"}]}])
    assert fixed[0]["content"] == [{"type": "text", "text": "and?"}]
    alone = paired([{"role": "user", "content": [RESULT]}])
    assert isinstance(alone[0]["content"], str) and alone[0]["content"].strip()


def test_without_tools_the_calls_and_results_go_as_text():
    messages = [{"role": "user", "content": "time?"}, {"role": "assistant", "content": [CALL]},
                {"role": "user", "content": [RESULT]}, {"role": "assistant", "content": "noon"},
                {"role": "user", "content": "thanks"}]
    assert window_for(messages, [CLOCK]) == messages
    flat = window_for(messages, None)
    assert flat[1]["content"] == [{"type": "text", "text": "[called tool clock with {}]"}]
    assert flat[2]["content"] == [{"type": "text", "text": "[tool result: noon]"}]


class _Conversation:
    tools, tool_choice = [CLOCK], {"type": "auto"}


def test_the_loop_guard_takes_the_tools_away_at_max_tool_rounds():
    settings = Settings(_env_file=None, max_tool_rounds=2)
    reply = ModelReply("Calling clock.", "m", 1, 1, stop_reason="tool_use",
                       blocks=({"type": "text", "text": "Calling clock."}, CALL))
    for tool_round, choice, status in [(0, {"type": "auto"}, "requires_action"),
                                       (1, {"type": "auto"}, "requires_action"), (2, {"type": "none"}, "succeeded")]:
        held = Claim(None, None, None, "", 1, None, request={"tool_round": tool_round})
        assert offered_tools(settings, _Conversation, held) == ([CLOCK], choice)
        kept, notice = past_the_guard(settings, held, reply)  # a provider that called anyway
        assert job_ending(kept)["status"] == status and (notice is not None) == (status == "succeeded")
    assert kept.blocks == ({"type": "text", "text": "Calling clock."},)
    message = Claim(None, None, None, "", 1, None, request={"tools": [], "content": "x"})
    assert offered_tools(settings, _Conversation, message) == ([], None)  # a message's own tools win


SEARCH = {"type": "web_search_20260318", "name": "web_search", "max_uses": 3}


def test_a_server_tool_is_taken_where_it_is_offered_and_the_provider_runs_it():
    assert check_tools([CLOCK, SEARCH], {"web_search"}) == [CLOCK, SEARCH]
    for offered, provider, fragment in [(set(), "anthropic", "not offered here (SERVER_TOOLS_ALLOWED: none)"),
                                        ({"web_search"}, "bedrock", "runs on the Anthropic API only"),
                                        ({"web_search"}, "anthropic", None)]:
        tools = [SEARCH] if fragment else [{**SEARCH, "blocked_domains": ["x.com"]}]
        with pytest.raises(ToolsRefused) as refused:
            check_tools(tools, offered, provider)
        assert (fragment or "unknown field 'blocked_domains'") in str(refused.value)


def test_without_tools_a_search_goes_as_text():
    use = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}
    found = {"type": "web_search_tool_result", "tool_use_id": "s1",
             "content": [{"type": "web_search_result", "url": "https://a.example", "title": "A"}]}
    messages = [{"role": "user", "content": "q?"}, {"role": "assistant", "content": [use, found]},
                {"role": "user", "content": "more"}]
    assert window_for(messages, [SEARCH]) == messages
    assert window_for(messages, None)[1]["content"] == [
        {"type": "text", "text": '[called tool web_search with {"query": "q"}]'},
        {"type": "text", "text": "[web_search_tool_result: A <https://a.example>]"}]
