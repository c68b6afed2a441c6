"""The offline model server, exercised through the real anthropic SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest
import requests

from offline_model import OfflineModelServer

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-5-5"
DEFAULTS = {"delay_ms": 0, "chunk_chars": 8, "stream_delay_ms": 0}


def tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


@pytest.fixture(scope="module")
def server():
    with OfflineModelServer(delay_ms=0) as srv:
        yield srv


@pytest.fixture(autouse=True)
def fresh_state(server):
    # Each test starts from default settings and an empty request log.
    assert requests.post(f"{server.url}/_control", json=DEFAULTS, timeout=5).status_code == 200
    assert requests.delete(f"{server.url}/_requests", timeout=5).status_code == 200
    yield
    requests.post(f"{server.url}/_control", json=DEFAULTS, timeout=5)


@pytest.fixture
def client(server):
    with anthropic.Anthropic(api_key="offline", base_url=server.url, max_retries=0, timeout=5) as c:
        yield c


CONVERSATION = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": [{"type": "text", "text": "Hi there"}]},
    {"role": "user", "content": [{"type": "text", "text": "What is Parley?"}]},
]
SYSTEM = "You are a terse assistant."
EXPECTED_TEXT = 'offline model: received 3 messages; last: "What is Parley?"'


def test_create_returns_deterministic_text_and_usage(client):
    message = client.messages.create(model=MODEL, max_tokens=64, system=SYSTEM, messages=CONVERSATION)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_offline_")
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == EXPECTED_TEXT
    expected_input = tokens(SYSTEM) + sum(tokens(t) + 4 for t in ("Hello", "Hi there", "What is Parley?"))
    assert message.usage.input_tokens == expected_input
    assert message.usage.output_tokens == tokens(EXPECTED_TEXT)


def test_stream_yields_deltas_matching_create(client):
    plain = client.messages.create(model=MODEL, max_tokens=64, system=SYSTEM, messages=CONVERSATION)

    with client.messages.stream(model=MODEL, max_tokens=64, system=SYSTEM, messages=CONVERSATION) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        deltas = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(deltas) == -(-len(EXPECTED_TEXT) // 8)
    assert all(len(d) <= 8 for d in deltas)
    assert "".join(deltas) == plain.content[0].text == EXPECTED_TEXT
    assert final.content[0].text == EXPECTED_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens


def test_chunk_chars_control_changes_delta_size(server, client):
    requests.post(f"{server.url}/_control", json={"chunk_chars": 20}, timeout=5)
    with client.messages.stream(model=MODEL, max_tokens=64, messages=CONVERSATION) as stream:
        deltas = list(stream.text_stream)
    assert [len(d) for d in deltas[:-1]] == [20] * (len(deltas) - 1)
    assert "".join(deltas) == EXPECTED_TEXT


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "I speak first"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [],
    ],
    ids=["starts-with-assistant", "not-alternating", "ends-with-assistant", "empty"],
)
def test_invalid_conversation_is_bad_request(client, messages):
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    assert excinfo.value.status_code == 400
    assert excinfo.value.body["error"]["type"] == "invalid_request_error"


def test_invalid_json_and_unknown_path_use_error_shape(server):
    bad = requests.post(f"{server.url}/v1/messages", data="{not json", timeout=5)
    assert bad.status_code == 400
    assert bad.json()["type"] == "error"
    assert bad.json()["error"]["type"] == "invalid_request_error"

    missing = requests.get(f"{server.url}/v1/nothing-here", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["type"] == "error"

    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}


def test_requests_are_recorded(server, client):
    client.messages.create(model=MODEL, max_tokens=64, system=SYSTEM, messages=CONVERSATION)
    with client.messages.stream(model=MODEL, max_tokens=32, messages=CONVERSATION[:1]) as stream:
        stream.until_done()

    recorded = requests.get(f"{server.url}/_requests", timeout=5).json()["requests"]
    assert len(recorded) == 2
    assert recorded[0]["system"] == SYSTEM
    assert recorded[0]["messages"] == CONVERSATION
    assert recorded[0]["model"] == MODEL
    assert recorded[0]["max_tokens"] == 64
    assert recorded[1]["stream"] is True
    assert recorded[1]["messages"] == CONVERSATION[:1]

    requests.delete(f"{server.url}/_requests", timeout=5)
    # Cleared; the one connection since is this GET's own.
    assert requests.get(f"{server.url}/_requests", timeout=5).json() == {
        "requests": [], "streams": {"completed": 0, "aborted": 0}, "connections": 1}


def test_delay_control_makes_calls_wait(server, client):
    settings = requests.post(f"{server.url}/_control", json={"delay_ms": 30_000}, timeout=5).json()
    assert settings["delay_ms"] == 30_000

    # The server holds its answer far longer than the client will wait.
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.2).messages.create(model=MODEL, max_tokens=8, messages=CONVERSATION)
    recorded = requests.get(f"{server.url}/_requests", timeout=5).json()["requests"]
    assert [r["messages"] for r in recorded] == [CONVERSATION]

    requests.post(f"{server.url}/_control", json={"delay_ms": 0}, timeout=5)
    message = client.with_options(timeout=5).messages.create(model=MODEL, max_tokens=64, messages=CONVERSATION)
    assert message.content[0].text == EXPECTED_TEXT


def test_reply_stops_at_max_tokens(server, client):
    """As a model's would: the reply is cut at max_tokens and says so."""
    cut = client.messages.create(model=MODEL, max_tokens=3, messages=CONVERSATION)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    assert EXPECTED_TEXT.startswith(cut.content[0].text) and cut.content[0].text != EXPECTED_TEXT
    with client.messages.stream(model=MODEL, max_tokens=3, messages=CONVERSATION) as stream:
        assert stream.get_final_message().stop_reason == "max_tokens"


def test_control_rejects_bad_values(server):
    response = requests.post(f"{server.url}/_control", json={"chunk_chars": 0}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_cli_prints_url_and_exits_cleanly_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "offline_model", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OFFLINE_MODEL_LOG": "0"},
    )
    try:
        line = proc.stdout.readline().strip()
        prefix = "offline model listening on http://127.0.0.1:"
        assert line.startswith(prefix)
        assert int(line[len(prefix):]) > 0
        url = line.split(" on ", 1)[1]
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "Traceback" not in stderr
