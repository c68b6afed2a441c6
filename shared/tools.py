"""Client tools: the definitions a conversation offers Claude, checked before they are
stored; the calls a reply makes; and the rules that keep every request valid for the
Messages API once tool calls are in the log.

A tool round keeps a turn's shape (one user message, one assistant reply): the reply
that calls tools is stored with its tool_use blocks and ends its job `requires_action`;
the caller's results become the next turn's user message (tool_result blocks), written
by a continuation job of the same conversation (shared/tool_results.py).
"""
from __future__ import annotations

import json
import re

from jsonschema import exceptions as schema_errors, validators

from shared.server_tools import ServerToolRefused, check_server_tool, is_server_block, is_server_tool

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # the Messages API's rule for a tool's name
MAX_TOOLS = 64
MAX_TOOLS_BYTES = 64 * 1024  # every definition together, as JSON
MAX_DESCRIPTION_CHARS = 10_000
CHOICE_TYPES = ("auto", "any", "tool", "none")
MISSING_RESULT = "No result: the call was not answered (its continuation did not complete)."


class ToolsRefused(ValueError):
    """Tool definitions or a tool_choice the API would refuse; the message says which and why."""


def check_tools(tools: list[dict] | None, server_tools: set[str] = frozenset(), provider: str = "anthropic"
                ) -> list[dict] | None:
    """The definitions as stored ({name, description, input_schema}, or a server tool of
    `server_tools`: shared/server_tools.py); ToolsRefused if not valid."""
    if tools is None:
        return None
    if len(tools) > MAX_TOOLS:
        raise ToolsRefused(f"tools: at most {MAX_TOOLS} tools.")
    if len(json.dumps(tools)) > MAX_TOOLS_BYTES:
        raise ToolsRefused(f"tools: at most {MAX_TOOLS_BYTES} bytes of definitions (as JSON).")
    seen: set[str] = set()
    checked = []
    for i, tool in enumerate(tools):
        if is_server_tool(tool):
            try:
                checked.append(check_server_tool(f"tools.{i}", tool, server_tools, provider))
            except ServerToolRefused as refused:
                raise ToolsRefused(str(refused)) from None
            if tool["name"] in seen:
                raise ToolsRefused(f"tools.{i}.name: {tool['name']!r} is defined twice; tool names must be unique.")
            seen.add(tool["name"])
            continue
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not NAME.match(name):
            raise ToolsRefused(f"tools.{i}.name: 1 to 64 letters, digits, _ or - (got {name!r}).")
        if name in seen:
            raise ToolsRefused(f"tools.{i}.name: {name!r} is defined twice; tool names must be unique.")
        seen.add(name)
        description = tool.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS):
            raise ToolsRefused(f"tools.{i}.description: text of at most {MAX_DESCRIPTION_CHARS} characters.")
        _check_schema(f"tools.{i}.input_schema", schema)
        checked.append({"name": name, **({"description": description} if description else {}),
                        "input_schema": schema})
    return checked


def _check_schema(where: str, schema) -> None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ToolsRefused(f"{where}: a JSON Schema object with \"type\": \"object\" (a tool's input is an object).")
    try:  # the schema's own dialect ($schema), draft 2020-12 by default, as the API reads it
        validators.validator_for(schema, default=validators.Draft202012Validator).check_schema(schema)
    except schema_errors.SchemaError as error:
        path = "".join(f"[{p!r}]" for p in error.absolute_path)
        raise ToolsRefused(f"{where}{path}: not a valid JSON Schema: {error.message}") from None


def check_tool_choice(choice: dict | None, tools: list[dict] | None) -> dict | None:
    """The tool_choice as stored; a `tool` choice must name one of `tools`."""
    if choice is None:
        return None
    kind = choice.get("type")
    if kind not in CHOICE_TYPES:
        raise ToolsRefused(f"tool_choice.type: one of {', '.join(CHOICE_TYPES)}.")
    if not tools:
        raise ToolsRefused("tool_choice: only with tools.")
    if kind == "tool" and choice.get("name") not in {t["name"] for t in tools}:
        raise ToolsRefused(f"tool_choice.name: {choice.get('name')!r} is not one of the tools.")
    if kind != "tool" and "name" in choice:
        raise ToolsRefused("tool_choice.name: only with type tool.")
    return {k: v for k, v in choice.items() if v is not None}


def tool_calls(blocks) -> list[dict]:
    """The client tool calls of a reply's blocks: [{id, name, input}], in order."""
    return [{"id": b["id"], "name": b["name"], "input": b.get("input") or {}}
            for b in blocks if b.get("type") == "tool_use"]


def request_tools(request: dict, conversation) -> tuple[list[dict] | None, dict | None]:
    """The tools and tool_choice a job runs with: its message's own, else its conversation's."""
    if "tools" in request:
        return request["tools"], request.get("tool_choice")
    return conversation.tools, conversation.tool_choice


def paired(messages: list[dict]) -> list[dict]:
    """The window's messages with every tool_use answered in the next message and no
    tool_result without its call, as the API requires. Needed where the log does not pair
    them: a continuation that failed or was cancelled stored no results, and a window that
    dropped its oldest turns may start with results whose calls are gone."""
    fixed = [dict(m) for m in messages]
    for i, message in enumerate(fixed):
        if message["role"] != "user" or isinstance(message["content"], str):
            continue
        asked = [b["id"] for b in _blocks(fixed[i - 1], "tool_use")] if i else []
        kept = [b for b in message["content"]
                if b.get("type") != "tool_result" or b.get("tool_use_id") in asked]
        if len(kept) != len(message["content"]):
            message["content"] = kept or "(Tool results whose calls are no longer in this conversation's window.)"
    for i, message in enumerate(fixed):
        if message["role"] != "assistant" or i + 1 >= len(fixed):
            continue
        answer = fixed[i + 1]
        answered = {b.get("tool_use_id") for b in _blocks(answer, "tool_result")}
        missing = [{"type": "tool_result", "tool_use_id": b["id"], "content": MISSING_RESULT, "is_error": True}
                   for b in _blocks(message, "tool_use") if b["id"] not in answered]
        if missing:
            rest = [{"type": "text", "text": answer["content"]}] if isinstance(answer["content"], str) \
                else answer["content"]
            answer["content"] = [*missing, *rest]  # results first, as the API expects
    return fixed


_PAIRED = frozenset({"tool_use", "tool_result"})


def window_for(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """The window as this turn sends it: calls paired with results, and, when the turn
    offers no tools (they were removed, or a message brought its own), earlier calls and
    results as text, since the API refuses tool blocks in a request without tools. A
    window without tool blocks (most) is returned as it is, after one look."""
    if not any(_has_tool_blocks(m) for m in messages):
        return messages
    messages = paired(messages)
    if tools:
        return messages
    return [{**m, "content": [_as_text(b) for b in m["content"]]} if _has_tool_blocks(m) else m for m in messages]


def _has_tool_blocks(message: dict) -> bool:
    """Calls or results, of client or server tools."""
    content = message["content"]
    return not isinstance(content, str) and any(b.get("type") in _PAIRED or is_server_block(b) for b in content)


def _as_text(block: dict) -> dict:
    if block.get("type") in ("tool_use", "server_tool_use"):
        return {"type": "text", "text": f"[called tool {block['name']} with {json.dumps(block.get('input') or {})}]"}
    if is_server_block(block):  # a server tool's result: its sources, by title and address
        found = block.get("content")
        sources = "; ".join(f"{r.get('title')} <{r.get('url')}>" for r in found if isinstance(r, dict)) \
            if isinstance(found, list) else "(no results)"
        return {"type": "text", "text": f"[{block['type']}: {sources or '(no results)'}]"}
    if block.get("type") == "tool_result":
        content = block.get("content")
        result = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content or [])
        kind = "error" if block.get("is_error") else "result"
        return {"type": "text", "text": f"[tool {kind}: {result or '(empty)'}]"}
    return block


def _blocks(message: dict, kind: str) -> list[dict]:
    content = message["content"]
    return [] if isinstance(content, str) else [b for b in content if b.get("type") == kind]
