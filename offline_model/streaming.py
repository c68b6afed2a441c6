"""The Messages API's stream as the offline model writes it: server-sent events, each its
own HTTP chunk, with thinking and tool blocks around the text, and the scripted faults
that cut a stream half-way. A mixin of the request handler (server.py); Converse's
event stream (converse.py) shares the chunk writer and the cut."""
from __future__ import annotations

import json

from offline_model.messages import paced
from offline_model.thinking import block_events
from offline_model.tools import stream_events as tool_stream_events


class MessagesStream:
    def _stream(self, message: dict, settings: dict, headers: dict, midway: str | None = None,
                tool_blocks: list[dict] = ()) -> None:
        chunks, gap = paced(message["content"][-1]["text"] if message["content"] else "", settings)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            if not self._stream_events(message, chunks, gap, midway, settings["chunk_chars"], tool_blocks):
                return
        except ConnectionError:
            with self.server.lock:
                self.server.streams["aborted"] += 1
            raise
        with self.server.lock:
            self.server.streams["completed"] += 1

    def _stream_events(self, message: dict, chunks: list[str], gap: float, midway: str | None,
                       chunk_chars: int, tool_blocks: list[dict] = ()) -> bool:
        """Write the stream; False if it was cut on purpose before the end."""
        stop_reason = message["stop_reason"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        self._event({"type": "message_start", "message": start})
        text_index = len(message["content"]) - 1  # thinking blocks, if any, come first
        for index, block in enumerate(message["content"][:-1]):
            for event in block_events(index, block, chunk_chars):
                self._event(event)
        if message["content"]:  # an empty answer streams no content block at all
            self._event({"type": "content_block_start", "index": text_index,
                         "content_block": {"type": "text", "text": ""}})
        for i, chunk in enumerate(chunks):
            if i and gap:
                self.server.stopping.wait(gap)
            if midway and i == len(chunks) // 2:
                if midway == "cut_midstream":  # the connection drops: no error, no end
                    self._cut()
                    return False
                # An error after output has started, as the API sends it: an SSE error event.
                self._event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return True
            self._event({"type": "content_block_delta", "index": text_index,
                         "delta": {"type": "text_delta", "text": chunk}})
        if message["content"]:
            self._event({"type": "content_block_stop", "index": text_index})
        for offset, block in enumerate(tool_blocks):  # client tool calls come after the text
            for event in tool_stream_events(text_index + 1 + offset, block):
                self._event(event)
        self._event({"type": "message_delta",
                     "delta": {"stop_reason": stop_reason, "stop_sequence": None,
                               **({"stop_details": message["stop_details"]} if message.get("stop_details") else {})},
                     "usage": {key: message["usage"][key] for key in ("output_tokens", "output_tokens_details",
                                                                      "server_tool_use") if key in message["usage"]}})
        self._event({"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return True

    def _cut(self) -> None:
        """Drop the connection where it is, as a failing network would."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(2)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, payload: dict) -> None:
        """Write one SSE event as its own HTTP chunk and flush it to the client right away."""
        self._chunk(f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode())
