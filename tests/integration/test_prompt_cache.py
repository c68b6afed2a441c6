"""Long conversations read their window from Claude's prompt cache (issue 14): where the
breakpoints go (seen in the real SDK's request, as the offline model recorded it), the
cache rules the offline model bills by, drop points that survive a rebuild from the log,
summaries refreshed only at drop points, and cost that adds up per job, conversation, day."""
from __future__ import annotations

import uuid
from decimal import Decimal

import anthropic
import pytest
import requests
from sqlalchemy import select

from offline_model import OfflineModelServer
from offline_model.messages import text_of
from shared.memory import estimate_tokens
from shared.models import Conversation
from shared.pricing import cost_usd
from shared.model import AnthropicProvider, BedrockProvider, ModelRequest
from tests.integration.helpers import new_conversation, say
from tests.integration.test_long_conversations import filler, summarizing, summary_calls  # noqa: F401 (fixture)
from tests.integration.test_turns import model_requests
from worker.window import rebuild_window

MODELS = {"anthropic": "claude-sonnet-5-5", "bedrock": "global.anthropic.claude-sonnet-5-5"}
SYSTEM = "You help travellers plan their trips. " + "Ask before you book anything, and keep it short. " * 120


@pytest.fixture(scope="module")
def server():
    with OfflineModelServer() as running:  # its own: these tests move its clock
        requests.post(f"{running.url}/_control", json={"chunk_chars": 4096}, timeout=5).raise_for_status()
        yield running


def recorded(server) -> list[dict]:
    return requests.get(f"{server.url}/_requests", timeout=5).json()["requests"]


def advance(server, seconds: float) -> None:
    requests.post(f"{server.url}/_control", json={"advance_clock_seconds": seconds}, timeout=5).raise_for_status()


def provider_for(kind: str, server, monkeypatch, ttl: str = "5m"):
    if kind == "anthropic":
        return AnthropicProvider("offline", server.url, timeout=10, cache_ttl=ttl)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return BedrockProvider("us-east-1", server.url, timeout=10, cache_ttl=ttl)


def marks(request: dict) -> list[str]:
    """Where a recorded request's breakpoints are: 'system', or 'message N'."""
    found = []
    for i, block in enumerate(request.get("system") or []):
        if "cache_control" in block or "cachePoint" in block:
            found.append("system" if "cachePoint" not in block else f"system after {i - 1}")
    for n, message in enumerate(request["messages"]):
        for block in message["content"]:
            if "cache_control" in block or "cachePoint" in block:
                found.append(f"message {n}")
    return found


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
def test_each_turn_reads_everything_the_turn_before_sent(kind, server, monkeypatch):
    provider, system = provider_for(kind, server, monkeypatch), f"{uuid.uuid4()} {SYSTEM}"
    history, replies = [], []
    for n in range(6):
        history.append({"role": "user", "content": f"Question {n}: " + "what about the ferry times? " * 20})
        replies.append(provider.complete(ModelRequest(system, list(history), MODELS[kind], 200)))
        history.append({"role": "assistant", "content": replies[-1].text})
        sent = recorded(server)[-1]
        assert marks(sent) == (["system", f"message {len(sent['messages']) - 1}"] if kind == "anthropic"
                               else ["system after 0", f"message {len(sent['messages']) - 1}"])
    first, *later = replies
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens == first.prompt_tokens
    for before, after in zip(replies, later):  # the whole prefix turn N cached is read by turn N+1
        assert after.cache_read_input_tokens == before.cache_read_input_tokens + before.cache_creation_input_tokens
        assert after.cache_creation_input_tokens < 2 * 200  # only its own new reply and message


@pytest.mark.parametrize("ttl, pause, read", [("5m", 301, False), ("1h", 600, True), ("1h", 3601, False)])
def test_an_entry_lives_for_its_ttl(server, monkeypatch, ttl, pause, read):
    provider, system = provider_for("anthropic", server, monkeypatch, ttl), f"{uuid.uuid4()} {SYSTEM}"
    history = [{"role": "user", "content": "Hello there"}]
    first = provider.complete(ModelRequest(system, history, MODELS["anthropic"], 100))
    assert recorded(server)[-1]["system"][0]["cache_control"] == ({"type": "ephemeral", "ttl": "1h"}
                                                                 if ttl == "1h" else {"type": "ephemeral"})
    advance(server, pause)
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Still there?"}]
    second = provider.complete(ModelRequest(system, history, MODELS["anthropic"], 100))
    assert second.cache_read_input_tokens == (first.cache_creation_input_tokens if read else 0)


def test_a_read_refreshes_the_entry(server, monkeypatch):
    provider, system = provider_for("anthropic", server, monkeypatch), f"{uuid.uuid4()} {SYSTEM}"
    ask = lambda: provider.complete(ModelRequest(system, [{"role": "user", "content": "Hi"}], MODELS["anthropic"], 50))
    written = ask().cache_creation_input_tokens
    for _ in range(3):  # 12 minutes in all, never 5 without a read
        advance(server, 240)
        assert ask().cache_read_input_tokens == written


def test_nothing_is_cached_below_the_models_minimum(server, monkeypatch):
    provider = provider_for("anthropic", server, monkeypatch)
    system = f"{uuid.uuid4()} " + "Keep it short. " * 200  # ~760 tokens
    for model, cached in (("claude-sonnet-5-5", False), ("claude-opus-5", True)):  # minimums 1,024 and 512
        reply = provider.complete(ModelRequest(system, [{"role": "user", "content": "Hi"}], model, 50))
        assert (reply.cache_creation_input_tokens > 0) is cached


@pytest.mark.parametrize("later_blocks, read", [(20, True), (22, False)])
def test_a_read_looks_back_at_most_20_blocks(server, later_blocks, read):
    client = anthropic.Anthropic(api_key="offline", base_url=server.url, max_retries=0)
    opening = {"role": "user", "content": [{"type": "text", "text": f"{uuid.uuid4()} " + SYSTEM,
                                            "cache_control": {"type": "ephemeral"}}]}
    first = client.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=[opening])
    turns = [{"role": "assistant" if i % 2 == 0 else "user", "content": f"block {i}"} for i in range(later_blocks)]
    turns[-1] = {"role": "user", "content": [{"type": "text", "text": "last", "cache_control": {"type": "ephemeral"}}]}
    second = client.messages.create(model=MODELS["anthropic"], max_tokens=50,
                                    messages=[{"role": "user", "content": opening["content"][0]["text"]}, *turns])
    assert second.usage.cache_read_input_tokens == (first.usage.cache_creation_input_tokens if read else 0)


def test_more_than_four_breakpoints_is_a_400(server):
    client = anthropic.Anthropic(api_key="offline", base_url=server.url, max_retries=0)
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=MODELS["anthropic"], max_tokens=50, messages=[{"role": "user", "content": blocks}])
    assert "A maximum of 4 blocks with cache_control" in refused.value.message


# ------------------------------------------------------------------ through the stack

WORDY = "Tell me more about the ferries, the trains and the mountain huts, please. "  # ~19 tokens


def test_drop_points_survive_a_rebuild_from_the_log(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    heads = []
    for n in range(9):
        say(client, alice, conversation_id, f"Turn {n}. " + WORDY * 2)
        with stack.services.sessions() as session:
            conversation = session.get(Conversation, uuid.UUID(conversation_id))
        cached = stack.services.windows.get(conversation_id)
        assert rebuild_window(stack.services, conversation) == cached  # same turns, same drop points
        heads.append(cached.window_start)
    drops = sum(1 for a, b in zip(heads, heads[1:]) if b != a)
    assert drops >= 2 and len(set(heads)) == drops + 1, heads
    assert all(b - a >= 2 for a, b in zip(sorted(set(heads)), sorted(set(heads))[1:]))  # whole turns, in steps
    # Redis loses the window: the next request is the one the cached window would have made.
    last = "And one more. " + WORDY
    cached.update_memory("user", last, estimate_tokens(last), seq=cached.turn_seq + 1)
    stack.services.windows.delete(conversation_id)
    say(client, alice, conversation_id, last)
    sent = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"][-1]["messages"]
    assert [{"role": m["role"], "content": text_of(m["content"])} for m in sent] == cached.get_current_context()


def test_summaries_refresh_only_when_the_window_drops_turns(stack, summarizing):  # noqa: F811
    talk = summarizing()
    requests.delete(f"{stack.model.url}/_requests", timeout=5)
    previous_head, previous_system, drops = None, None, 0
    for n in range(10):
        before = len(summary_calls(stack))
        assert talk.say(filler(n)).status == "succeeded"
        replies = [r for r in model_requests(stack) if r not in summary_calls(stack)]
        head, system = replies[-1]["messages"][0]["content"], replies[-1]["system"]
        refreshed = len(summary_calls(stack)) > before
        if previous_head is not None:
            dropped = head != previous_head
            drops += dropped
            assert refreshed == dropped, f"turn {n}: summary refreshed {refreshed}, window dropped turns {dropped}"
            assert (system != previous_system) == dropped  # the prompt's prefix changes only at a drop
        previous_head, previous_system = head, system
    assert drops >= 2


def test_cost_adds_up_per_job_conversation_and_day(stack, client, make_user):
    headers = make_user()
    conversation_id = new_conversation(client, headers, system=SYSTEM)
    jobs = [say(client, headers, conversation_id, f"Question {n}: " + WORDY) for n in range(3)]
    settings = stack.settings
    costs = []
    for job in jobs:
        usage = job["reply"]["usage"]
        tokens = {k: v for k, v in usage.items() if k != "cost_usd"}
        expected = cost_usd(job["reply"]["model"], tokens, settings.prompt_cache_ttl, settings.model_prices_json)
        assert usage["cost_usd"] == float(expected) > 0
        costs.append(expected)
    assert jobs[-1]["reply"]["usage"]["cache_read_input_tokens"] > 0  # the system prompt and earlier turns
    conversation = client.get(f"/v1/conversations/{conversation_id}", headers=headers).get_json()
    assert conversation["cost_usd"] == float(sum(costs, Decimal(0)))
    prompt = sum(j["reply"]["usage"][k] for j in jobs for k in ("input_tokens", "cache_creation_input_tokens",
                                                                  "cache_read_input_tokens"))
    reads = sum(j["reply"]["usage"]["cache_read_input_tokens"] for j in jobs)
    assert conversation["cache_hit_ratio"] == round(reads / prompt, 4)
    report = client.get("/v1/usage", headers=headers).get_json()
    assert report["totals"]["cost_usd"] == report["days"][0]["cost_usd"] == float(sum(costs, Decimal(0)))
    with stack.services.sessions() as session:  # the column, not a float sum: exact
        stored = session.scalar(select(Conversation.cost_usd).where(
            Conversation.conversation_id == uuid.UUID(conversation_id)))
    assert stored == sum(costs, Decimal(0))
