"""HTTP server speaking the Anthropic Messages API (and, through its mixins, the Models
API and Bedrock's Converse) with canned replies, a simulated prompt cache and scripted
faults; plus the test-only /_control, /_requests and /healthz."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from offline_model import catalog
from offline_model.converse import ConverseRoutes
from offline_model.media import FilesApiRoutes, attachment_note, media_key, received_in
from offline_model.messages import BadRequest, prompt_tokens, text_of, validate_messages
from offline_model.models_api import ModelsApiRoutes
from offline_model.streaming import MessagesStream
from offline_model.tools import search_reply, tool_reply, tools_problem
from offline_model.thinking import signature_problem, thinking_problem, thinking_tokens, thinks, thought_blocks
from offline_model.wire import (ANTHROPIC_ERRORS, FAULTS, PromptCache, TooManyBreakpoints, anthropic_blocks,
                                 estimate_tokens, reply_text, scripted_answer)

MIDSTREAM_FAULTS = ("overloaded_midstream", "cut_midstream")

MAX_RECORDED = 1000
_CONTROL_KEYS = ("delay_ms", "chunk_chars", "stream_delay_ms")


class OfflineHTTPServer(ThreadingHTTPServer):
    """Threading server holding the shared settings, counters and request log."""

    daemon_threads = True
    # Idle keep-alive connections from pooled clients must not block server_close().
    block_on_close = False
    # Connections waiting to be accepted: a worker's burst opens hundreds at once (socketserver's 5 reset them).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], delay_ms: int | None = None) -> None:
        super().__init__(address, Handler)
        if delay_ms is None:
            delay_ms = int(os.environ.get("OFFLINE_MODEL_DELAY_MS") or 0)
        self.settings = {"delay_ms": delay_ms, "chunk_chars": 8, "stream_delay_ms": 0}
        self.lock = threading.Lock()
        self.recorded: list[Any] = []
        # Streams written to the end, and streams the client closed before the end.
        self.streams = {"completed": 0, "aborted": 0}
        self.connections = 0  # TCP connections accepted: a client's pool reusing its connections adds none
        self.counter = 0
        self.faults: list[str] = []  # taken one per model request, in order
        self.retry_after = "0"  # sent with rate_limited / overloaded faults
        self.cache = PromptCache()
        # The prompt cache's clock: real time plus what /_control {"advance_clock_seconds": n} added,
        # so a test or the bench can let entries expire without waiting.
        self.clock_offset = 0.0
        self.lifecycle: dict[str, str] = {}  # model id -> stage, overriding the catalog's
        self.files: dict[str, dict] = {}  # Files API uploads: id -> data, media_type, filename
        # Set on shutdown so in-flight delays end promptly instead of holding threads.
        self.stopping = threading.Event()

    def process_request(self, request, client_address) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)


class Handler(MessagesStream, ModelsApiRoutes, ConverseRoutes, FilesApiRoutes, BaseHTTPRequestHandler):
    """Routes /v1/messages plus the test-only /_control, /_requests and /healthz."""

    server: OfflineHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; streams use chunked encoding
    # TCP_NODELAY: a stream's small writes must not wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

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
        path = self.path.split("?", 1)[0]
        route = routes.get(path)
        if route is None and self.command == "POST" and path.startswith("/model/"):
            route = self._converse
        if route is None and self.command == "GET" and path.startswith("/v1/models/"):
            route = self._model
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
        self._dispatch({"/healthz": self._healthz, "/_requests": self._list_requests, "/v1/models": self._models,
                        "/foundation-models": self._foundation_models,
                        "/_files": self._list_files})

    def do_POST(self) -> None:
        self._dispatch({"/v1/messages": self._messages, "/_control": self._control, "/v1/files": self._upload_file})

    def do_DELETE(self) -> None:
        self._dispatch({"/_requests": self._clear_requests})

    # -- test endpoints ---------------------------------------------------

    def _healthz(self) -> None:
        self._send_json(200, {"status": "ok"})

    def _control(self) -> None:
        body = self._read_json()
        if not isinstance(body, dict):
            raise BadRequest("control body must be a JSON object")
        faults = body.pop("faults", None)
        if faults is not None and (not isinstance(faults, list) or any(f not in FAULTS for f in faults)):
            raise BadRequest(f"faults: a list of {', '.join(FAULTS)}")
        retry_after = body.pop("retry_after", None)
        advance = body.pop("advance_clock_seconds", 0)
        if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
            raise BadRequest("advance_clock_seconds: must be a number >= 0")
        lifecycle = body.pop("lifecycle", None)
        if lifecycle is not None and (not isinstance(lifecycle, dict) or any(
                not isinstance(k, str) or v not in (*catalog.STAGES, None) for k, v in lifecycle.items())):
            raise BadRequest(f"lifecycle: an object of model id to one of {', '.join(catalog.STAGES)} or null")
        updates = {k: body[k] for k in _CONTROL_KEYS if k in body}
        for key, value in updates.items():
            minimum = 1 if key == "chunk_chars" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise BadRequest(f"{key}: must be an integer >= {minimum}")
        with self.server.lock:
            self.server.settings.update(updates)
            if faults is not None:
                self.server.faults = list(faults)
            if retry_after is not None:
                self.server.retry_after = str(retry_after)
            for model, stage in (lifecycle or {}).items():
                if stage is None:
                    self.server.lifecycle.pop(model, None)
                else:
                    self.server.lifecycle[model] = stage
            self.server.clock_offset += advance
            current = {**self.server.settings, "faults": list(self.server.faults),
                       "clock_offset_seconds": self.server.clock_offset}
        self._send_json(200, current)

    def _list_requests(self) -> None:
        with self.server.lock:
            recorded, streams, connections = list(self.server.recorded), dict(self.server.streams), self.server.connections
        self._send_json(200, {"requests": recorded, "streams": streams, "connections": connections})

    def _clear_requests(self) -> None:
        with self.server.lock:
            self.server.recorded.clear()
            self.server.streams = {"completed": 0, "aborted": 0}
            self.server.connections = 0
        self._send_json(200, {"requests": [], "streams": dict(self.server.streams), "connections": 0})

    # -- Messages API -----------------------------------------------------

    def _arrive(self, body: Any) -> tuple[int, dict, str | None]:
        """Record a model request; its number, the current settings and its fault, if any."""
        srv = self.server
        with srv.lock:
            # Recorded before validating and delaying so tests can see requests that fail or time out.
            srv.recorded.append(body)
            del srv.recorded[:-MAX_RECORDED]
            srv.counter += 1
            fault = srv.faults.pop(0) if srv.faults else None
            return srv.counter, dict(srv.settings), fault

    def _fault_before_output(self, fault: str | None, errors: dict, send_error) -> bool:
        """Act out a fault that happens before any output; True if the request is answered."""
        if fault == "hang":
            self.server.stopping.wait(600)
            return True
        if fault == "disconnect":
            self._cut()
            return True
        if fault in errors:
            status, kind, message = errors[fault]
            headers = {"retry-after": self.server.retry_after} if fault in ("rate_limited", "overloaded") else {}
            send_error(status, kind, message, headers)
            return True
        return False

    def _messages(self) -> None:
        body = self._read_json()
        number, settings, fault = self._arrive(body)
        self.server.stopping.wait(settings["delay_ms"] / 1000)
        messages = validate_messages(body)
        if isinstance(body, dict) and (refusal := self._unavailable_model(body.get("model"))):
            self._send_error(404, "not_found_error", refusal)
            return
        thinking = body.get("thinking")
        if problem := (thinking_problem(body.get("model"), thinking, body.get("max_tokens"),
                                        (body.get("output_config") or {}).get("effort"))
                       or signature_problem(messages)
                       or tools_problem(messages, [t.get("name") for t in body.get("tools") or []])):
            raise BadRequest(problem)
        with self.server.lock:
            media = received_in(messages, dict(self.server.files), self.headers.get("anthropic-beta") or "")
        if self._fault_before_output(fault, ANTHROPIC_ERRORS, self._send_anthropic_error):
            return

        reply, stop_reason = reply_text(messages, text_of, body.get("max_tokens"))
        reply += attachment_note(media) if stop_reason == "end_turn" else ""
        stop_details = None
        if scripted := scripted_answer(messages, text_of):
            reply, stop_reason, stop_details = scripted
        tool_blocks: list[dict] = []
        searched = None if scripted else search_reply(messages, body.get("tools") or [], text_of, number)
        if searched:
            reply, tool_blocks, stop_reason, searches = searched
        elif not scripted and (called := tool_reply(messages, [t.get("name") for t in body.get("tools") or []],
                                                  body.get("tool_choice"), text_of, number)):
            reply, tool_blocks, stop_reason = called
        input_tokens = prompt_tokens(messages, text_of(body.get("system"))) + sum(r.tokens for m in media for r in m)
        try:
            with self.server.lock:
                usage = self.server.cache.usage(body.get("model"), anthropic_blocks(body, text_of, media_key(media)),
                                                input_tokens,
                                                time.monotonic() + self.server.clock_offset)
        except TooManyBreakpoints as exc:
            raise BadRequest(str(exc)) from None
        thoughts = thought_blocks(messages, text_of) if thinks(thinking) and reply else []
        if thoughts:
            usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens(thoughts)}
        message = {
            "id": f"msg_offline_{number}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [*thoughts, {"type": "text", "text": reply}] if reply else [],  # an empty answer has none
            "stop_reason": stop_reason,
            "stop_details": stop_details,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": estimate_tokens(reply) + (2 if not reply else 0)
                      + thinking_tokens(thoughts)},
        }
        if searched:
            message["usage"]["server_tool_use"] = searches
        headers = {"request-id": f"req_offline_{number}"}
        if body.get("stream"):
            self._stream(message, settings, headers, midway=fault if fault in MIDSTREAM_FAULTS else None,
                         tool_blocks=tool_blocks)
        else:
            self._send_json(200, {**message, "content": message["content"] + tool_blocks}, headers)

    def _send_anthropic_error(self, status: int, kind: str, message: str, headers: dict) -> None:
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)
