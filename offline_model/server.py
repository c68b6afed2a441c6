"""HTTP server speaking the Anthropic Messages API wire format with canned replies."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_RECORDED = 1000
_CONTROL_KEYS = ("delay_ms", "chunk_chars", "stream_delay_ms")


class BadRequest(Exception):
    """Raised for a request the real API would reject with invalid_request_error."""


def _estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _text_of(content: Any) -> str:
    """Text of a message's content or a system prompt: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _validate(body: Any) -> list[dict]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), (str, list)):
            raise BadRequest(f"messages.{i}: must be an object with string or list content")
        expected = "user" if i % 2 == 0 else "assistant"
        if msg.get("role") != expected:
            if i == 0:
                raise BadRequest("messages: first message must use the \"user\" role")
            raise BadRequest("messages: roles must alternate between \"user\" and \"assistant\"")
    if messages[-1]["role"] != "user":
        raise BadRequest("messages: final message must use the \"user\" role")
    return messages


class OfflineHTTPServer(ThreadingHTTPServer):
    """Threading server holding the shared settings, counters and request log."""

    daemon_threads = True
    # Idle keep-alive connections from pooled clients must not block server_close().
    block_on_close = False

    def __init__(self, address: tuple[str, int], delay_ms: int | None = None) -> None:
        super().__init__(address, Handler)
        if delay_ms is None:
            delay_ms = int(os.environ.get("OFFLINE_MODEL_DELAY_MS") or 0)
        self.settings = {"delay_ms": delay_ms, "chunk_chars": 8, "stream_delay_ms": 0}
        self.lock = threading.Lock()
        self.recorded: list[Any] = []
        self.counter = 0
        # Set on shutdown so in-flight delays end promptly instead of holding threads.
        self.stopping = threading.Event()


class Handler(BaseHTTPRequestHandler):
    """Routes /v1/messages plus the test-only /_control, /_requests and /healthz."""

    server: OfflineHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; streams use chunked encoding

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("OFFLINE_MODEL_LOG") == "1":
            super().log_message(format, *args)

    # -- plumbing ---------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, kind: str, message: str) -> None:
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}})

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"invalid JSON body: {exc}") from None

    def _dispatch(self, routes: dict) -> None:
        route = routes.get(self.path.split("?", 1)[0])
        try:
            if route is None:
                self.close_connection = True  # the unread body would be taken for the next request
                self._send_error(404, "not_found_error", f"Not found: {self.command} {self.path}")
            else:
                route()
        except BadRequest as exc:
            self._send_error(400, "invalid_request_error", str(exc))
        except ConnectionError:
            # The client gave up (e.g. its timeout fired during our delay); nothing to answer.
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch({"/healthz": self._healthz, "/_requests": self._list_requests})

    def do_POST(self) -> None:
        self._dispatch({"/v1/messages": self._messages, "/_control": self._control})

    def do_DELETE(self) -> None:
        self._dispatch({"/_requests": self._clear_requests})

    # -- test endpoints ---------------------------------------------------

    def _healthz(self) -> None:
        self._send_json(200, {"status": "ok"})

    def _control(self) -> None:
        body = self._read_json()
        if not isinstance(body, dict):
            raise BadRequest("control body must be a JSON object")
        updates = {k: body[k] for k in _CONTROL_KEYS if k in body}
        for key, value in updates.items():
            minimum = 1 if key == "chunk_chars" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise BadRequest(f"{key}: must be an integer >= {minimum}")
        with self.server.lock:
            self.server.settings.update(updates)
            current = dict(self.server.settings)
        self._send_json(200, current)

    def _list_requests(self) -> None:
        with self.server.lock:
            recorded = list(self.server.recorded)
        self._send_json(200, {"requests": recorded})

    def _clear_requests(self) -> None:
        with self.server.lock:
            self.server.recorded.clear()
        self._send_json(200, {"requests": []})

    # -- Messages API -----------------------------------------------------

    def _messages(self) -> None:
        body = self._read_json()
        srv = self.server
        with srv.lock:
            # Recorded before validating and delaying so tests can see requests that fail or time out.
            srv.recorded.append(body)
            del srv.recorded[:-MAX_RECORDED]
            srv.counter += 1
            number = srv.counter
            settings = dict(srv.settings)
        srv.stopping.wait(settings["delay_ms"] / 1000)
        messages = _validate(body)

        reply = f'offline model: received {len(messages)} messages; last: "{_text_of(messages[-1]["content"])}"'
        input_tokens = sum(_estimate_tokens(_text_of(m["content"])) + 4 for m in messages)
        if body.get("system"):
            input_tokens += _estimate_tokens(_text_of(body["system"]))
        output_tokens = _estimate_tokens(reply)
        message = {
            "id": f"msg_offline_{number}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
        headers = {"request-id": f"req_offline_{number}"}
        if body.get("stream"):
            self._stream(message, settings, headers)
        else:
            self._send_json(200, message, headers)

    def _stream(self, message: dict, settings: dict, headers: dict) -> None:
        reply = message["content"][0]["text"]
        size = settings["chunk_chars"]
        chunks = [reply[i : i + size] for i in range(0, len(reply), size)]
        # stream_delay_ms is the total time, spread evenly over the gaps between deltas.
        gap = settings["stream_delay_ms"] / 1000 / max(1, len(chunks) - 1)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}}
        self._event({"type": "message_start", "message": start})
        self._event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        for i, chunk in enumerate(chunks):
            if i and gap:
                self.server.stopping.wait(gap)
            self._event({"type": "content_block_delta", "index": 0,
                         "delta": {"type": "text_delta", "text": chunk}})
        self._event({"type": "content_block_stop", "index": 0})
        self._event({"type": "message_delta",
                     "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                     "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        self._event({"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, payload: dict) -> None:
        """Write one SSE event as its own HTTP chunk and flush it to the client right away."""
        data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
