"""Server-Sent Events: the `text/event-stream` wire format, parsed line by line."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True)
class Event:
    type: str
    data: object  # the JSON value, or the raw text if it is not JSON
    id: str | None = None


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines; comments (`: ping`) are skipped, and an
    event cut off by the end of the stream is dropped, as the SSE spec says."""
    kind, data, event_id = "", [], None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or kind:
                yield Event(kind or "message", _decode("\n".join(data)), event_id)
            kind, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


def _decode(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text
