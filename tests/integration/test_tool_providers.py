"""Client tool calls through both providers' real client libraries (anthropic SDK, boto3)
against the offline model's Messages API and Converse wire formats: the tools go out in
each provider's shape, a call comes back as a tool_use block with its parsed input, the
results go back as tool_result blocks, and a call retried mid-stream is reset and kept once."""
from __future__ import annotations

import json

import requests

from shared.model import ModelRequest
from tests.integration.test_providers import faults, provider, server  # noqa: F401 (fixtures)

CLOCK = {"name": "clock", "description": "The time.", "input_schema": {"type": "object",
                                                                      "properties": {"tz": {"type": "string"}}}}


def call(provider, messages, pieces: list | None = None, **kwargs):
    resets = []
    request = ModelRequest(system=None, messages=messages, model=provider.model, max_tokens=200, tools=[CLOCK],
                           on_reset=lambda: resets.append(1), on_tool_input=(pieces if pieces is not None else [])
                           .append, **kwargs)
    return provider.complete(request), resets


def test_a_tool_call_and_its_result_round_trip(provider, server):
    asked = [{"role": "user", "content": 'call tool clock {"tz": "Asia/Tokyo"}'}]
    pieces: list[dict] = []
    reply, _ = call(provider, asked, pieces)
    assert reply.stop_reason == "tool_use"
    (use,) = [b for b in reply.blocks if b["type"] == "tool_use"]
    assert use["name"] == "clock" and use["input"] == {"tz": "Asia/Tokyo"}
    assert {(p["id"], p["name"]) for p in pieces} == {(use["id"], "clock")}  # streamed as it was written
    assert json.loads("".join(p["partial_json"] for p in pieces)) == use["input"]
    sent = requests.get(f"{server.url}/_requests", timeout=5).json()["requests"][-1]
    assert sent.get("tools") == [CLOCK] or sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == \
        CLOCK["input_schema"]

    answered = [*asked, {"role": "assistant", "content": list(reply.blocks)},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "21:00"}]}]
    final, _ = call(provider, answered)
    assert final.stop_reason == "end_turn" and final.text == "The tool clock returned: 21:00"


def test_tool_choice_none_gets_an_answer_without_calls_where_the_provider_has_it(provider, server):
    reply, _ = call(provider, [{"role": "user", "content": "call tool clock {}"}], tool_choice={"type": "none"})
    calls = [b for b in reply.blocks if b["type"] == "tool_use"]
    sent = requests.get(f"{server.url}/_requests", timeout=5).json()["requests"][-1]
    if "toolConfig" in sent:  # Converse has no `none`: the tools go without a choice (worker/tool_turns.py
        assert "toolChoice" not in sent["toolConfig"] and calls  # then drops a call past the loop guard)
    else:
        assert sent["tool_choice"] == {"type": "none"} and not calls


def test_a_call_retried_mid_stream_is_reset_and_kept_once(provider, server):
    faults(server, "overloaded_midstream")
    reply, resets = call(provider, [{"role": "user", "content": 'call tool clock {"tz": "UTC"} and more words'}])
    assert resets == [1]
    assert [b["name"] for b in reply.blocks if b["type"] == "tool_use"] == ["clock"]
