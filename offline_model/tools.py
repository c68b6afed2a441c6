"""Tools, emulated. Server tools: with a web_search tool in the request, a user message
containing `search the web for QUERY` gets a reply that searches (a server_tool_use
block, canned results, then an answer citing the first one) and counts one search.
Client tool calls: a user message containing `call tool NAME {json}` (several
for parallel calls) gets a reply that calls those tools, if the request offers them;
`keep calling tool NAME {json}` calls it again after every result (a loop, for the
loop guard). A message of tool results gets a reply that says what each returned.
`tool_choice` {"type": "none"} is honoured: no calls, a text answer.
"""
from __future__ import annotations

import json
import re

_CALL = re.compile(r"call(?:ing)? tool ([A-Za-z0-9_-]{1,64})")
_DECODER = json.JSONDecoder()


def requested_calls(text: str) -> list[tuple[str, dict]]:
    """(name, input) for each `call tool NAME {json}` in the text, in order."""
    calls = []
    for match in _CALL.finditer(text):
        rest = text[match.end():].lstrip()
        arguments = {}
        if rest.startswith("{"):
            try:
                arguments, _ = _DECODER.raw_decode(rest)
            except ValueError:
                arguments = {}
        calls.append((match[1], arguments if isinstance(arguments, dict) else {}))
    return calls


def _blocks(content, kind: str) -> list[dict]:
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


def _instruction(messages: list[dict], text_of) -> str:
    """The newest user message with text: what the user asked for."""
    for message in reversed(messages):
        if message["role"] == "user" and (text := text_of(message["content"])).strip():
            return text
    return ""


def tool_reply(messages: list[dict], tool_names: list[str], choice: dict | None, text_of, number: int
               ) -> tuple[str, list[dict], str] | None:
    """(text, tool_use blocks, stop_reason) when tools are in play, else None."""
    newest = messages[-1]["content"]
    # Results alone answer calls; with text beside them the user has said something new.
    results = _blocks(newest, "tool_result") if not text_of(newest).strip() else []
    if not tool_names and not results:
        return None
    instruction = _instruction(messages, text_of)
    may_call = bool(tool_names) and (choice or {}).get("type") != "none"
    if results:
        if may_call and "keep calling tool" in instruction:
            asked = requested_calls(instruction)
        else:
            return _report(messages, results, text_of), [], "end_turn"
    else:
        asked = requested_calls(text_of(messages[-1]["content"])) if may_call else []
        if not asked and (choice or {}).get("type") == "tool":
            asked = [(choice["name"], {})]
    offered = [(name, arguments) for name, arguments in asked if name in tool_names]
    if not offered:
        return None
    calls = [{"type": "tool_use", "id": f"toolu_offline_{number}_{i}", "name": name, "input": arguments}
             for i, (name, arguments) in enumerate(offered)]
    return f"Calling {', '.join(name for name, _ in offered)}.", calls, "tool_use"


def _report(messages: list[dict], results: list[dict], text_of) -> str:
    names = {b.get("id"): b.get("name") for b in _blocks(messages[-2]["content"], "tool_use")} \
        if len(messages) > 1 else {}
    lines = []
    for result in results:
        content = result.get("content")
        text = content if isinstance(content, str) else text_of(content or [])
        name = names.get(result.get("tool_use_id"), "?")
        lines.append(f"The tool {name} {'failed' if result.get('is_error') else 'returned'}: {text}")
    return "\n".join(lines)


def tools_problem(messages: list[dict], tool_names: list[str]) -> str | None:
    """The API's rule: tool blocks in the messages need the tools defined in the request."""
    if tool_names:
        return None
    if any(_blocks(m["content"], "tool_use") or _blocks(m["content"], "tool_result") for m in messages):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    return None


_SEARCH = re.compile(r"search the web for ([^.?!\n]+)")


def search_reply(messages: list[dict], tools: list[dict], text_of, number: int
                 ) -> tuple[str, list[dict], str, dict] | None:
    """(text, the blocks after it, stop_reason, usage's server_tool_use) for a search, else None."""
    if not any(str(t.get("type", "")).startswith("web_search_") for t in tools):
        return None
    asked = _SEARCH.search(text_of(messages[-1]["content"]))
    if not asked:
        return None
    query, tool_id = asked[1].strip(), f"srvtoolu_offline_{number}"
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "result"
    results = [{"type": "web_search_result", "url": f"https://example.com/{slug}/{i}", "title": f"{query} ({i})",
                "encrypted_content": f"offline-{slug}-{i}", "page_age": None} for i in (1, 2)]
    cited = f"{query} is described on example.com."
    answer = {"type": "text", "text": f"According to the first result, {cited}",
              "citations": [{"type": "web_search_result_location", "url": results[0]["url"],
                             "title": results[0]["title"], "encrypted_index": f"offline-{slug}-1",
                             "cited_text": cited}]}
    return ("Let me search the web.",
            [{"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}},
             {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results}, answer],
            "end_turn", {"web_search_requests": 1})


def stream_events(index: int, block: dict) -> list[dict]:
    """A block after the reply's text as the Messages API streams it: a tool call starts with
    an empty input and streams its JSON; a tool's result arrives whole; text streams its
    text, then its citations."""
    if block["type"] == "text":
        return [{"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": block["text"]}},
                *({"type": "content_block_delta", "index": index, "delta": {"type": "citations_delta",
                                                                            "citation": citation}}
                  for citation in block.get("citations", [])),
                {"type": "content_block_stop", "index": index}]
    if block["type"] not in ("tool_use", "server_tool_use"):
        return [{"type": "content_block_start", "index": index, "content_block": block},
                {"type": "content_block_stop", "index": index}]
    raw = json.dumps(block["input"])
    half = len(raw) // 2
    return [{"type": "content_block_start", "index": index,
             "content_block": {"type": block["type"], "id": block["id"], "name": block["name"], "input": {}}},
            *({"type": "content_block_delta", "index": index,
               "delta": {"type": "input_json_delta", "partial_json": piece}} for piece in (raw[:half], raw[half:])),
            {"type": "content_block_stop", "index": index}]


def converse_frames(index: int, block: dict) -> list[tuple[str, dict]]:
    """The same block as ConverseStream sends a toolUse."""
    return [("contentBlockStart", {"start": {"toolUse": {"toolUseId": block["id"], "name": block["name"]}},
                                   "contentBlockIndex": index}),
            ("contentBlockDelta", {"delta": {"toolUse": {"input": json.dumps(block["input"])}},
                                   "contentBlockIndex": index}),
            ("contentBlockStop", {"contentBlockIndex": index})]


def from_converse_tool(block: dict) -> dict | None:
    """A Converse toolUse / toolResult block in the Messages API's shape; None for another kind."""
    if "toolUse" in block:
        use = block["toolUse"]
        return {"type": "tool_use", "id": use.get("toolUseId"), "name": use.get("name"), "input": use.get("input")}
    if "toolResult" in block:
        result = block["toolResult"]
        return {"type": "tool_result", "tool_use_id": result.get("toolUseId"),
                "content": [{"type": "text", "text": item.get("text", "")} for item in result.get("content", [])],
                **({"is_error": True} if result.get("status") == "error" else {})}
    return None


def converse_tools(body: dict) -> tuple[list[str], dict | None]:
    """A Converse request's tool names and its choice, in the Messages API's shape."""
    config = body.get("toolConfig") or {}
    names = [t.get("toolSpec", {}).get("name") for t in config.get("tools", [])]
    choice = config.get("toolChoice") or {}
    if "tool" in choice:
        return names, {"type": "tool", "name": choice["tool"].get("name")}
    return names, ({"type": next(iter(choice))} if choice else None)
