"""Thinking through both providers' real client libraries (the anthropic SDK's request
building and stream parsing, boto3's Converse and event-stream decoding) against the
offline model, which signs its thinking and refuses a block sent back altered."""
from __future__ import annotations

import pytest
import requests

from offline_model import OfflineModelServer
from offline_model.thinking import REDACTED_TRIGGER
from shared.model import AnthropicProvider, BedrockProvider, ModelError, ModelRequest

MODELS = {"anthropic": "claude-sonnet-5-5", "bedrock": "global.anthropic.claude-sonnet-5-5"}
ADAPTIVE = {"type": "adaptive"}


@pytest.fixture(scope="module")
def server():
    with OfflineModelServer() as running:
        yield running


@pytest.fixture(params=["anthropic", "bedrock"])
def provider(request, server, monkeypatch):
    requests.post(f"{server.url}/_control", json={"faults": [], "chunk_chars": 6}, timeout=5).raise_for_status()
    requests.delete(f"{server.url}/_requests", timeout=5).raise_for_status()
    if request.param == "anthropic":
        made = AnthropicProvider("offline", server.url, timeout=5)
    else:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(name, value)
        made = BedrockProvider("us-east-1", server.url, timeout=5)
    made.name, made.model = request.param, MODELS[request.param]
    return made


def ask(provider, messages: list[dict], heard: list | None = None, **kwargs):
    heard = heard if heard is not None else []
    request = ModelRequest(system="Think first.", messages=messages, model=provider.model, max_tokens=3000,
                           on_text=lambda t: heard.append(("text", t)),
                           on_thinking=lambda t: heard.append(("thinking", t)), **kwargs)
    return provider.complete(request)


def sent(server) -> list[dict]:
    return requests.get(f"{server.url}/_requests", timeout=5).json()["requests"]


def test_thinking_streams_before_the_text_and_goes_back_exactly(provider, server):
    heard = []
    first = [{"role": "user", "content": "What is 2 + 2?"}]
    reply = ask(provider, first, heard, thinking=ADAPTIVE, effort="high")
    thinking, text = reply.blocks
    assert thinking["type"] == "thinking" and thinking["signature"] and "2 + 2" in thinking["thinking"]
    assert text == {"type": "text", "text": reply.text}
    kinds = [kind for kind, _ in heard]
    assert kinds == sorted(kinds, reverse=True) and kinds[0] == "thinking"  # all thinking, then all text
    assert "".join(t for kind, t in heard if kind == "thinking") == thinking["thinking"]
    request = sent(server)[-1]
    extra = request["additionalModelRequestFields"] if provider.name == "bedrock" else request
    assert extra["thinking"] == ADAPTIVE and extra["output_config"] == {"effort": "high"}

    history = [*first, {"role": "assistant", "content": list(reply.blocks)}, {"role": "user", "content": "And 3?"}]
    assert ask(provider, history, thinking=ADAPTIVE).text.endswith('last: "And 3?"')

    altered = [dict(block) for block in reply.blocks]
    altered[0]["thinking"] += " (edited)"
    with pytest.raises(ModelError) as refused:
        ask(provider, [*first, {"role": "assistant", "content": altered}, history[-1]], thinking=ADAPTIVE)
    assert refused.value.kind == "invalid_request" and "signature" in refused.value.message


def test_redacted_thinking_round_trips(provider):
    first = [{"role": "user", "content": f"{REDACTED_TRIGGER} hello"}]
    reply = ask(provider, first, thinking=ADAPTIVE)
    redacted = reply.blocks[0]
    assert redacted["type"] == "redacted_thinking" and redacted["data"]
    history = [*first, {"role": "assistant", "content": list(reply.blocks)}, {"role": "user", "content": "more"}]
    assert ask(provider, history, thinking=ADAPTIVE).text.endswith('last: "more"')
    forged = [{"type": "redacted_thinking", "data": redacted["data"][:-8] + "AAAAAAA="}, reply.blocks[1]]
    with pytest.raises(ModelError, match="redacted_thinking"):
        ask(provider, [*first, {"role": "assistant", "content": forged}, history[-1]], thinking=ADAPTIVE)


def test_a_thinking_type_the_model_does_not_take_is_the_models_400(provider):
    with pytest.raises(ModelError) as refused:
        ask(provider, [{"role": "user", "content": "hi"}], thinking={"type": "enabled", "budget_tokens": 2048})
    assert refused.value.kind == "invalid_request" and "thinking.type.enabled" in refused.value.message


def test_bedrock_sends_no_temperature_with_thinking(server, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    bedrock = BedrockProvider("us-east-1", server.url, timeout=5)
    bedrock.model = MODELS["bedrock"]
    ask(bedrock, [{"role": "user", "content": "warm"}], temperature=0.5)
    assert sent(server)[-1]["inferenceConfig"]["temperature"] == 0.5
    reply = ask(bedrock, [{"role": "user", "content": "warm"}], temperature=0.5, thinking=ADAPTIVE)
    assert reply.blocks[0]["type"] == "thinking" and "temperature" not in sent(server)[-1]["inferenceConfig"]
