"""The model providers through their real client libraries (anthropic SDK, boto3)
against the offline model's wire formats: streaming, usage with prompt caching,
the error taxonomy and the one retry layer."""
from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from offline_model import OfflineModelServer
from shared.cancel import CancelToken
from shared.model import (AnthropicProvider, BedrockProvider, ModelError, ModelRequest, RetryingProvider,
                          RetryPolicy)

# A current model of each provider (the offline model refuses unknown and retired ids, as the real ones do).
MODELS = {"anthropic": "claude-sonnet-5-5", "bedrock": "global.anthropic.claude-sonnet-5-5"}
FAST = RetryPolicy(max_retries=3, budget_seconds=10, base_seconds=0.01, cap_seconds=0.05)


@pytest.fixture(scope="module")
def server():
    with OfflineModelServer() as running:
        yield running


@pytest.fixture(params=["anthropic", "bedrock"])
def provider(request, server, monkeypatch):
    requests.post(f"{server.url}/_control", json={"faults": [], "chunk_chars": 5, "retry_after": "0"}, timeout=5)
    if request.param == "anthropic":
        inner = AnthropicProvider("offline", server.url, timeout=5)
    else:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(name, value)
        inner = BedrockProvider("us-east-1", server.url, timeout=5)
    wrapped = RetryingProvider(inner, FAST)
    wrapped.model = MODELS[request.param]  # the id this provider's tests ask for
    return wrapped


def faults(server, *names: str) -> None:
    requests.post(f"{server.url}/_control", json={"faults": list(names)}, timeout=5).raise_for_status()


def ask(provider, text: str = "Hello there", **kwargs):
    deltas, resets = [], []
    request = ModelRequest(system="Be brief.", messages=[{"role": "user", "content": text}],
                           model=getattr(provider, "model", MODELS["anthropic"]),
                           max_tokens=100, on_text=deltas.append, on_reset=lambda: resets.append(len(deltas)),
                           **kwargs)
    return provider.complete(request), deltas, resets


def test_streams_text_and_reports_usage(provider):
    reply, deltas, resets = ask(provider, "stream me")
    assert reply.text == 'offline model: received 1 messages; last: "stream me"'
    assert "".join(deltas) == reply.text and len(deltas) > 3 and resets == []
    assert reply.output_tokens > 0 and reply.prompt_tokens > 0


def test_the_next_turn_reads_the_prompt_cache(provider):
    # A prompt the cache has not seen, past the model's minimum cacheable length (1,024 tokens).
    system = f"Be brief. {uuid.uuid4()} " + "Answer in plain words. " * 250
    history = [{"role": "user", "content": "cache me please"}]
    first = provider.complete(ModelRequest(system, history, provider.model, 100))
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and again"}]
    second = provider.complete(ModelRequest(system, history, provider.model, 100))
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens > 0  # the new turn, for the turn after


@pytest.mark.parametrize("fault", ["rate_limited", "overloaded", "server_error"])
def test_transient_errors_are_retried(provider, server, fault):
    faults(server, fault, fault)
    reply, _, resets = ask(provider)
    assert reply.text.startswith("offline model") and resets == []


def test_an_error_inside_a_started_stream_resets_and_retries(provider, server):
    faults(server, "overloaded_midstream")
    reply, deltas, resets = ask(provider, "a long enough message to stream in parts")
    assert len(resets) == 1 and resets[0] > 0  # some text had been shown before the reset
    assert "".join(deltas[resets[0]:]) == reply.text


@pytest.mark.parametrize("fault,kind", [("context_too_long", "context_too_long"), ("auth", "provider_auth"),
                                        ("invalid_request", "invalid_request")])
def test_permanent_errors_fail_at_once(provider, server, fault, kind):
    faults(server, fault, fault)
    with pytest.raises(ModelError) as raised:
        ask(provider)
    assert raised.value.kind == kind and not raised.value.retryable
    faults(server)  # the second fault was never taken: no retry happened
    state = requests.post(f"{server.url}/_control", json={}, timeout=5).json()
    assert state["faults"] == []


def test_retries_stop_at_the_limit(provider, server):
    faults(server, *["overloaded"] * 5)
    with pytest.raises(ModelError) as raised:
        ask(provider)
    assert raised.value.kind == "overloaded"
    assert requests.post(f"{server.url}/_control", json={}, timeout=5).json()["faults"] == ["overloaded"]


def test_a_timeout_is_a_model_timeout(server):
    faults(server, "hang")
    provider = RetryingProvider(AnthropicProvider("offline", server.url, timeout=0.5), RetryPolicy(max_retries=0))
    with pytest.raises(ModelError) as raised:
        ask(provider)
    assert raised.value.kind == "model_timeout"


def test_cancel_during_backoff_stops_retrying(server):
    faults(server, "overloaded")
    token = CancelToken()
    slow = RetryingProvider(AnthropicProvider("offline", server.url, timeout=5),
                            RetryPolicy(max_retries=3, base_seconds=30, cap_seconds=30))
    token.cancel()
    from shared.cancel import Cancelled
    with pytest.raises(Cancelled):
        ask(slow, cancel=token)


def test_retry_after_is_honoured():
    policy = RetryPolicy(base_seconds=0.01, cap_seconds=1)
    assert policy.delay(0, 2.5) == 2.5 and policy.delay(3, None) <= 0.08


@pytest.fixture(autouse=True)
def _aws_region(monkeypatch):
    if "AWS_DEFAULT_REGION" not in os.environ:
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_summary_follows_the_cached_system_prompt_and_stop_reason_is_reported(provider, server):
    requests.delete(f"{server.url}/_requests", timeout=5)
    system = f"Be brief. {uuid.uuid4()}"
    request = ModelRequest(system, [{"role": "user", "content": "hi"}], provider.model, 3, summary="They met in Oslo.")
    reply = provider.complete(request)
    assert reply.stop_reason == "max_tokens" and reply.output_tokens == 3
    sent = requests.get(f"{server.url}/_requests", timeout=5).json()["requests"][-1]["system"]
    texts = [block["text"] for block in sent if "text" in block]
    assert texts[0] == system and "They met in Oslo." in texts[1]
    # The cache breakpoint sits on the system prompt, before the summary, which changes now and then.
    marked = [i for i, block in enumerate(sent) if "cache_control" in block or "cachePoint" in block]
    assert marked == ([1] if "cachePoint" in sent[1] else [0])  # Bedrock: a cachePoint block after it


def test_one_call_only_when_the_request_allows_no_retries(provider, server):
    faults(server, "server_error")
    with pytest.raises(ModelError) as failed:
        ask(provider, max_retries=0)
    assert failed.value.kind == "model_unavailable"
    assert ask(provider)[0].text.startswith("offline model")  # the fault was used up by that one call


def test_a_stream_cut_half_way_resets_and_retries(provider, server):
    faults(server, "cut_midstream")
    reply, deltas, resets = ask(provider, "a long enough message to be cut in the middle")
    assert len(resets) == 1 and resets[0] > 0
    assert "".join(deltas[resets[0]:]) == reply.text


@pytest.mark.parametrize("name", ["anthropic", "bedrock"])
def test_a_burst_of_calls_reuses_the_connections_of_the_last(server, monkeypatch, name):
    """A worker keeps a connection for every call it holds in flight: two bursts of as
    many calls as its concurrency open at most that many connections (the SDK keeps 100
    by default, botocore 10; a busy worker reopened the rest on every burst, against the
    real APIs with a TLS handshake each)."""
    calls = 120
    if name == "anthropic":
        provider = AnthropicProvider("offline", server.url, timeout=10, connections=calls)
    else:
        for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(variable, value)
        provider = BedrockProvider("us-east-1", server.url, timeout=10, connections=calls)
    provider.model = MODELS[name]
    # Long enough that every call of a burst is in flight at once.
    requests.post(f"{server.url}/_control", json={"faults": [], "delay_ms": 500}, timeout=5).raise_for_status()
    requests.delete(f"{server.url}/_requests", timeout=5).raise_for_status()
    try:
        for _ in range(2):
            with ThreadPoolExecutor(calls) as pool:
                replies = list(pool.map(lambda n: ask(provider, f"call {n}")[0], range(calls)))
            assert all(reply.text.endswith(f'"call {n}"') for n, reply in enumerate(replies))
        opened = requests.get(f"{server.url}/_requests", timeout=5).json()["connections"] - 1  # this GET's own
        assert opened <= calls
    finally:
        requests.post(f"{server.url}/_control", json={"delay_ms": 0}, timeout=5).raise_for_status()
