"""What tools mean for one turn of the pipeline: which tools the model is offered, the
loop guard (MAX_TOOL_ROUNDS), how a reply that calls tools ends its job, and the
`tool.call` events."""
from __future__ import annotations

from dataclasses import replace

from shared.model import ModelReply
from shared.models import Conversation
from shared.server_tools import is_server_block
from shared.tools import request_tools, tool_calls
from shared.jobs import Claim

NO_TOOLS = {"type": "none"}


def offered_tools(settings, conversation: Conversation, held: Claim) -> tuple[list[dict] | None, dict | None]:
    """The tools and tool_choice for this turn. A continuation at MAX_TOOL_ROUNDS is asked
    to answer without calling another tool (the tools stay defined: the window holds calls)."""
    tools, choice = request_tools(held.request, conversation)
    if tools and held.request.get("tool_round", 0) >= settings.max_tool_rounds:
        return tools, NO_TOOLS
    return tools, choice


def past_the_guard(settings, held: Claim, reply: ModelReply) -> tuple[ModelReply, str | None]:
    """A reply that calls tools past the guard (a provider without a `none` choice) keeps
    only its other blocks; returns it and what the user is told."""
    if held.request.get("tool_round", 0) < settings.max_tool_rounds or not calls_of(reply):
        return reply, None
    kept = tuple(b for b in reply.blocks if b.get("type") != "tool_use")
    notice = (f"Claude asked for another tool call after {settings.max_tool_rounds} rounds of tool results "
              f"for one message (MAX_TOOL_ROUNDS); the call was dropped.")
    return replace(reply, blocks=kept, stop_reason="end_turn"), notice


def calls_of(reply: ModelReply) -> list[dict]:
    return tool_calls(reply.blocks) if reply.stop_reason == "tool_use" else []


def job_ending(reply: ModelReply) -> dict:
    """end_job's status and required_action for a stored reply: requires_action when it calls tools."""
    calls = calls_of(reply)
    return {"status": "requires_action", "required_action": {"type": "tool_calls", "tool_calls": calls}} \
        if calls else {"status": "succeeded"}


def announce_calls(live, reply: ModelReply) -> None:
    """One `tool.call` event a call, after the turn is committed (a retried attempt never
    shows a call twice) and before the job's final event; a server tool's call (`server`:
    true) and its `tool.result` in the order Claude made them."""
    for block in reply.blocks:
        if block.get("type") == "server_tool_use":
            live.add("tool.call", {"id": block["id"], "name": block["name"], "input": block.get("input") or {},
                                   "server": True})
        elif is_server_block(block):
            live.add("tool.result", {"tool_use_id": block.get("tool_use_id"), "type": block["type"],
                                     "content": block.get("content")})
    for call in calls_of(reply):
        live.add("tool.call", call)
