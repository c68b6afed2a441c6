"""Reading Server-Sent Events from the Flask test client, all at once or one by one."""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class SseEvent:
    id: int
    type: str
    data: dict


def parse(text: str) -> tuple[list[SseEvent], int]:
    """The events in `text` and the number of `: ping` comments."""
    events, pings = [], 0
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                pings += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            events.append(SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events, pings


class SseReader:
    """Reads a streamed response event by event; `close()` hangs up like a client would."""

    def __init__(self, response):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/event-stream"
        self.response, self.buffer, self.pings = response, "", 0
        self.chunks = iter(response.response)

    def next_event(self) -> SseEvent | None:
        while True:
            if "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                events, pings = parse(block + "\n\n")
                self.pings += pings
                if events:
                    return events[0]
                continue
            chunk = next(self.chunks, None)
            if chunk is None:
                return None
            self.buffer += chunk.decode() if isinstance(chunk, bytes) else chunk

    def until(self, predicate) -> list[SseEvent]:
        """Events up to and including the first that satisfies `predicate` (or the end)."""
        seen = []
        while (event := self.next_event()) is not None:
            seen.append(event)
            if predicate(event):
                break
        return seen

    def rest(self) -> list[SseEvent]:
        return self.until(lambda event: False)

    def close(self) -> None:
        self.response.close()
