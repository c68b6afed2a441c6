"""Server tools: a conversation opts into web search, Claude searches (the offline model
emulates it through the real SDK: a server_tool_use block, canned results, an answer
citing one), the search streams as tool.call / tool.result events, is stored in the log
with the reply, goes back unchanged on the next turn, and is priced with the turn."""
from __future__ import annotations

import requests

from tests.integration.helpers import new_conversation, say
from tests.integration.sse import SseReader

SEARCH = {"type": "web_search_20260318", "name": "web_search", "max_uses": 2}


def test_a_search_is_streamed_stored_sent_back_and_priced(stack, client, alice):
    conversation_id = new_conversation(client, alice, tools=[SEARCH])
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": "search the web for parley queues"},
                           headers={**alice, "Accept": "text/event-stream"}, buffered=False)
    events = SseReader(response).rest()
    job = events[-1].data
    assert events[-1].type == "job.succeeded", [e.type for e in events]
    call = next(e.data for e in events if e.type == "tool.call")
    assert call["server"] is True and call["name"] == "web_search" and call["input"] == {"query": "parley queues"}
    result = next(e.data for e in events if e.type == "tool.result")
    assert result["tool_use_id"] == call["id"] and result["type"] == "web_search_tool_result"
    assert [r["url"] for r in result["content"]] == ["https://example.com/parley-queues/1",
                                                     "https://example.com/parley-queues/2"]
    assert job["reply"]["content"].endswith("According to the first result, parley queues is described on "
                                            "example.com.")
    assert job["reply"]["usage"]["web_search_requests"] == 1
    assert job["reply"]["usage"]["cost_usd"] > 0.01  # the search ($10 per 1,000) on top of the tokens
    sent = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"][-1]
    assert sent["tools"] == [SEARCH]

    stored = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"][1]["content"]
    assert [b["type"] for b in stored] == ["text", "server_tool_use", "web_search_tool_result", "text"]
    assert stored[3]["citations"][0]["url"] == "https://example.com/parley-queues/1"
    assert say(client, alice, conversation_id, "Thanks")["status"] == "succeeded"
    sent = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"][-1]
    assert [b["type"] for b in sent["messages"][1]["content"]] == [b["type"] for b in stored]  # sent back whole
    assert sent["messages"][1]["content"][2] == stored[2]


def test_server_tools_are_checked_when_set(client, alice):
    def refused(tools, fragment):
        response = client.post("/v1/conversations", json={"tools": tools}, headers=alice)
        assert response.status_code == 400 and fragment in response.get_json()["error"]["message"], \
            response.get_json()

    refused([{**SEARCH, "type": "web_search_20990101"}], "web_search_20260318")
    refused([{**SEARCH, "max_uses": 0}], "max_uses")
    refused([SEARCH, SEARCH], "defined twice")
