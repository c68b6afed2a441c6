"""Demo client tools for `python -m client chat --tool NAME`: Claude may call them while
you chat; the client runs them on this machine and sends their results back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Tool:
    definition: dict  # as the API takes it: name, description, input_schema
    run: Callable[[dict], str]  # the result's text; raises ValueError for an error result


def _clock(arguments: dict) -> str:
    zone = arguments.get("tz") or "UTC"
    try:
        now = datetime.now(timezone.utc).astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}; use an IANA name such as Europe/Paris") from None
    return f"{now.isoformat(timespec='seconds')} ({zone})"


DEMO_TOOLS = {
    "clock": Tool({"name": "clock", "description": "The current date and time in a time zone.",
                   "input_schema": {"type": "object", "properties": {
                       "tz": {"type": "string",
                              "description": "an IANA time zone, e.g. Europe/Paris; UTC by default"}}}},
                  _clock),
}


def run_calls(tools: dict[str, Tool], calls: list[dict], out: TextIO) -> list[dict]:
    """Run each call Claude made; one result per call, an error result for a failure."""
    results = []
    for call in calls:
        out.write(f"[tool {call['name']} {json.dumps(call['input'])}]")
        tool = tools.get(call["name"])
        try:
            if tool is None:
                raise ValueError(f"this client has no tool {call['name']!r}")
            results.append({"tool_call_id": call["id"], "content": tool.run(call["input"])})
        except ValueError as error:
            results.append({"tool_call_id": call["id"], "content": str(error), "is_error": True})
        out.write(f" -> {results[-1]['content']}\n")
    out.flush()
    return results
