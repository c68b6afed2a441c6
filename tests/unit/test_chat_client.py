"""The terminal client: SSE parsing, how a reply is printed, Ctrl-C, and errors a person can read.

The server is httpx's MockTransport speaking the API's event-stream contract (no I/O).
"""
from __future__ import annotations

import io
import json

import httpx2 as httpx
import pytest

from client import __main__ as cli
from client.api import ClientError, Parley
from client.chat import RESTARTED, THINKING, chat, send
from client.sse import Event, parse_events

JOB = "5b7c0f8e-0000-4000-8000-000000000001"
CONVERSATION = "9d1e6a2c-0000-4000-8000-000000000002"


def sse(*events: tuple[str, dict], pings: bool = True) -> bytes:
    out = []
    for number, (kind, data) in enumerate(events, 1):
        if pings:
            out.append(": ping\n\n")
        out.append(f"id: {number}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
    return "".join(out).encode()


def succeeded(content: str) -> dict:
    return {"id": JOB, "status": "succeeded", "reply": {"role": "assistant", "content": content}, "error": None}


class Server:
    """Answers like Parley; records what the client asked."""

    def __init__(self, stream: bytes | httpx.SyncByteStream | None = None, job: dict | None = None,
                 message_status: int = 200):
        self.stream, self.job, self.message_status = stream, job, message_status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/messages") and request.method == "GET":
            return httpx.Response(200, json=self.page(request.url.params.get("before")))
        if path.endswith("/messages"):
            if self.message_status != 200:
                return httpx.Response(self.message_status, json={"job": {"id": JOB, "status": "queued"}},
                                      headers={"Location": f"/v1/jobs/{JOB}"})
            headers = {"Content-Type": "text/event-stream", "Location": f"/v1/jobs/{JOB}"}
            if isinstance(self.stream, bytes):
                return httpx.Response(200, headers=headers, content=self.stream)
            return httpx.Response(200, headers=headers, stream=self.stream)
        if path == f"/v1/jobs/{JOB}/cancel":
            return httpx.Response(200, json={"id": JOB, "status": "cancelled"})
        if path == f"/v1/jobs/{JOB}":
            return httpx.Response(200, json=self.job)
        if path == "/v1/conversations" and request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": CONVERSATION, "name": "Trip", "message_count": 2}],
                                             "next_cursor": None})
        return httpx.Response(404, json={"error": {"type": "not_found", "message": "No such thing."}})

    def page(self, before: str | None) -> dict:
        """Two pages of history: four messages, then the first two."""
        said = [{"seq": n, "role": "user" if n % 2 else "assistant", "content": f"message {n}"} for n in (4, 3, 2, 1)]
        chosen = said[2:] if before else said[:2]
        return {"data": chosen, "has_more": not before, "first_cursor": None, "last_cursor": "c2" if not before else "c0"}

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def talk(server: Server, content: str = "hello") -> tuple[str, str]:
    parley = Parley("http://parley.test", "pk_test", transport=httpx.MockTransport(server))
    out = io.StringIO()
    status = send(parley, CONVERSATION, content, out)
    return status, out.getvalue()


def test_parse_events_follows_the_wire_format():
    lines = [": ping", "", "id: 1", "event: message.delta", 'data: {"text": "Hi"}', "",
             "data: first", "data: second", "", "id: 3\r", "event: job.started\r", "data: {}\r", "\r",
             "event: job.succeeded", "data: {"]  # cut off: never dispatched
    assert list(parse_events(lines)) == [
        Event("message.delta", {"text": "Hi"}, "1"),
        Event("message", "first\nsecond", None),
        Event("job.started", {}, "3"),
    ]


def test_reply_streams_and_a_reset_discards_the_partial_text():
    server = Server(sse(("job.queued", {"id": JOB, "status": "queued"}), ("job.started", {"attempt": 1}),
                        ("message.delta", {"text": "Hel"}), ("message.reset", {"reason": "retry"}),
                        ("message.delta", {"text": "Hello"}), ("message.delta", {"text": " there"}),
                        ("job.succeeded", succeeded("Hello there"))))
    status, out = talk(server)
    assert status == "succeeded"
    assert out == f"claude> Hel\n{RESTARTED}\nclaude> Hello there\n"
    request = server.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["authorization"] == "Bearer pk_test"
    assert json.loads(request.content) == {"content": "hello"}


def test_thinking_shows_as_one_collapsed_line_before_the_reply():
    server = Server(sse(("thinking.delta", {"thinking": "Let me"}), ("thinking.delta", {"thinking": " see."}),
                        ("message.delta", {"text": "Hi"}), ("job.succeeded", succeeded("Hi"))))
    assert talk(server)[1] == f"{THINKING}\nclaude> Hi\n"


def test_final_reply_completes_text_the_stream_did_not_show():
    server = Server(sse(("message.delta", {"text": "Hello"}), ("job.succeeded", succeeded("Hello there"))))
    assert talk(server)[1] == "claude> Hello there\n"


def test_refused_and_truncated_replies_say_so_under_the_text():
    refused = succeeded("Hello..")
    refused["reply"].update(outcome="refused", stop_reason="refusal", notice="Claude declined: cyber. Rephrase.")
    assert talk(Server(sse(("job.succeeded", refused))))[1] == \
        "claude> Hello..\n[refused: Claude declined: cyber. Rephrase.]\n"
    cut = succeeded("Once upon a")
    cut["reply"].update(outcome="truncated", stop_reason="max_tokens")
    assert talk(Server(sse(("job.succeeded", cut))))[1] == \
        'claude> Once upon a\n[cut short (max_tokens): say "continue" for the rest]\n'


def test_failed_and_cancelled_jobs_say_why():
    failed = {"id": JOB, "status": "failed", "error": {"type": "model_timeout", "message": "Too slow."}}
    status, out = talk(Server(sse(("message.delta", {"text": "Hi"}), ("job.failed", failed))))
    assert (status, out) == ("failed", "claude> Hi\n[failed: model_timeout: Too slow.]\n")
    status, out = talk(Server(sse(("job.cancelled", {"id": JOB, "status": "cancelled"}))))
    assert (status, out) == ("cancelled", "[cancelled]\n")


def test_a_broken_stream_falls_back_to_waiting_for_the_job():
    server = Server(sse(("message.delta", {"text": "Hel"})), job=succeeded("Hello"))
    status, out = talk(server)
    assert (status, out) == ("succeeded", "claude> Hello\n")
    assert server.paths()[-1] == f"GET /v1/jobs/{JOB}"
    assert server.requests[-1].url.params["wait"] == "30"


def test_a_server_without_streaming_is_long_polled():
    server = Server(message_status=202, job=succeeded("Hi!"))
    assert talk(server) == ("succeeded", "claude> Hi!\n")


class Interrupted(httpx.SyncByteStream):
    """Two events arrive, then the user presses Ctrl-C."""

    def __iter__(self):
        yield sse(("job.started", {"attempt": 1}), ("message.delta", {"text": "Once upon"}))
        raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_ctrl_c_during_a_reply_cancels_its_job():
    server = Server(Interrupted())
    status, out = talk(server)
    assert status == "cancelled"
    assert out == "claude> Once upon\n[cancelled]\n"
    assert server.paths()[-1] == f"POST /v1/jobs/{JOB}/cancel"


def test_refused_connection_and_bad_key_are_plain_errors():
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    parley = Parley("http://127.0.0.1:9", "pk", transport=httpx.MockTransport(refuse))
    with pytest.raises(ClientError) as refused:
        parley.conversations()
    assert refused.value.fatal
    assert str(refused.value).startswith("cannot connect to Parley at http://127.0.0.1:9 (connection refused)")

    def unauthorized(request):
        return httpx.Response(401, json={"error": {"type": "unauthorized", "message": "Invalid or revoked API key."}})

    parley = Parley("http://parley.test", "pk", transport=httpx.MockTransport(unauthorized))
    with pytest.raises(ClientError) as denied:
        parley.conversations()
    assert denied.value.fatal and denied.value.status == 401
    assert "Invalid or revoked API key" in str(denied.value) and "PARLEY_API_KEY" in str(denied.value)


def test_chat_picks_a_conversation_sends_lines_and_ends_on_ctrl_d(monkeypatch):
    server = Server(sse(("job.succeeded", succeeded("Hi!"))))
    answers = iter(["1", "", "/older", "/older", "hello"])

    def fake_input(prompt: str) -> str:
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    out = io.StringIO()
    parley = Parley("http://parley.test", "pk", transport=httpx.MockTransport(server))
    assert chat(parley, out) == 0
    assert "1. Trip  (2 messages)" in out.getvalue()
    # The newest page on opening, oldest first on screen; older pages only when asked.
    assert "you> message 3\nclaude> message 4\n[/older shows earlier messages]\n" in out.getvalue()
    assert "[earlier]\nyou> message 1\nclaude> message 2\n" in out.getvalue()
    assert "[no earlier messages]\n" in out.getvalue()
    assert "claude> Hi!\n" in out.getvalue()
    assert server.paths() == ["GET /v1/conversations", f"GET /v1/conversations/{CONVERSATION}/messages",
                              f"GET /v1/conversations/{CONVERSATION}/messages",
                              f"POST /v1/conversations/{CONVERSATION}/messages"]
    assert [r.url.params.get("before") for r in server.requests[1:3]] == [None, "c2"]


def test_without_a_key_the_cli_says_how_to_get_one(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("PARLEY_API_KEY", raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    assert cli.main(["chat"]) == 2
    assert "no API key" in capsys.readouterr().err
    (tmp_path / "dev-api-key").write_text("pk_saved\n")
    assert cli.dev_key() == "pk_saved"
