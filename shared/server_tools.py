"""Server tools: tools Claude runs itself on the Anthropic API (web search), opted into per
conversation from the list the operator allows (SERVER_TOOLS_ALLOWED). They go in the
same `tools` list as client tools, in the API's own shape ({"type": "web_search_20260318",
"name": "web_search", "max_uses": 3}); their calls and results come back as blocks of the
reply (server_tool_use, web_search_tool_result) that are stored and sent back as they came,
and each search is priced with the turn.
"""
from __future__ import annotations

from decimal import Decimal

# name -> the API's types for it that Parley passes through, the current one first (the
# pinned SDK's newest; the older ones keep conversations that chose them working).
SERVER_TOOLS = {"web_search": ("web_search_20260318", "web_search_20260209", "web_search_20250305")}
RESULT_TYPES = ("web_search_tool_result",)
# The Messages API's price for web search: $10 per 1,000 searches, on top of the tokens.
SEARCH_PRICE = Decimal("0.01")
_FIELDS = {"type", "name", "max_uses", "allowed_domains"}


class ServerToolRefused(ValueError):
    """A server tool this deployment or provider does not offer, or a setting it refuses."""


def allowed(setting: str) -> set[str]:
    return {name.strip() for name in setting.split(",") if name.strip()}


def check_server_tool(where: str, tool: dict, offered: set[str], provider: str) -> dict:
    """The entry as stored, or ServerToolRefused saying why not."""
    kind, name = tool.get("type"), tool.get("name")
    if name not in SERVER_TOOLS or kind not in SERVER_TOOLS[name]:
        known = ", ".join(f"{n} ({', '.join(types)})" for n, types in SERVER_TOOLS.items())
        raise ServerToolRefused(f"{where}: unknown server tool {kind!r} named {name!r}; Parley knows {known}.")
    if name not in offered:
        raise ServerToolRefused(f"{where}: server tool {name!r} is not offered here (SERVER_TOOLS_ALLOWED: "
                                f"{', '.join(sorted(offered)) or 'none'}).")
    if provider != "anthropic":
        raise ServerToolRefused(f"{where}: server tool {name!r} runs on the Anthropic API only; this deployment "
                                f"uses {provider}.")
    if extra := sorted(set(tool) - _FIELDS):
        raise ServerToolRefused(f"{where}: unknown field {extra[0]!r}.")
    uses = tool.get("max_uses")
    if uses is not None and (isinstance(uses, bool) or not isinstance(uses, int) or uses < 1):
        raise ServerToolRefused(f"{where}.max_uses: an integer of at least 1.")
    domains = tool.get("allowed_domains")
    if domains is not None and (not isinstance(domains, list) or not all(isinstance(d, str) and d for d in domains)):
        raise ServerToolRefused(f"{where}.allowed_domains: a list of domain names.")
    return {k: v for k, v in tool.items() if v is not None}


def is_server_tool(tool: dict) -> bool:
    return "type" in tool and tool.get("type") != "custom"


def is_server_block(block: dict) -> bool:
    return block.get("type") == "server_tool_use" or block.get("type") in RESULT_TYPES


def server_tools_cost(requests: dict) -> Decimal:
    """What the reply's server tool use cost beyond its tokens."""
    return SEARCH_PRICE * int(requests.get("web_search_requests") or 0)
