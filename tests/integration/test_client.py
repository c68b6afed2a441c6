"""`python -m client chat` against the real API over HTTP: a streamed reply, Ctrl-C, bad key, no server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import requests
from werkzeug.serving import make_server

from devstack.ports import free_port
from shared.config import ROOT
from tests.integration.helpers import new_conversation, wait_job


@pytest.fixture(scope="module")
def api_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture()
def model(stack):
    def control(**settings) -> None:
        requests.post(f"{stack.model.url}/_control", json=settings, timeout=5).raise_for_status()

    yield control
    control(delay_ms=0, chunk_chars=8, stream_delay_ms=0)


# `python -m client`, with Ctrl-C raising KeyboardInterrupt as at a terminal whatever the
# suite was started with: a suite run as a background job (`make test &`, nohup, a CI
# runner) inherits SIGINT ignored, and so would the client, unless something in the
# suite's own process happened to install a handler first.
CLIENT = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "runpy.run_module('client', run_name='__main__', alter_sys=True)")


class Terminal:
    """The client as a child process; `wait_for` returns once its output shows `text`."""

    def __init__(self, *args: str, env: dict | None = None):
        self.out, self.err, self.changed = "", "", threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-c", CLIENT, "chat", *args], cwd=ROOT,
                                        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in ("out", "err")]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = self.process.stdout if name == "out" else self.process.stderr
        while chunk := os.read(stream.fileno(), 4096):
            with self.changed:
                setattr(self, name, getattr(self, name) + chunk.decode())
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 20) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.out, timeout), \
                f"never printed {text!r}:\n{self.out}\n--- its stderr:\n{self.err}"

    def type(self, line: str) -> None:
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def close(self) -> tuple[int, str]:
        """Ctrl-D; the exit status and stderr."""
        self.process.stdin.close()
        status = self.process.wait(20)
        self.readers[1].join(20)  # stderr is read until it closes, once the client has exited
        return status, self.err


def key_of(headers: dict) -> str:
    return headers["Authorization"].split(" ", 1)[1]


def test_chat_streams_a_reply_into_a_new_conversation(client, api_url, alice):
    terminal = Terminal("--url", api_url, env={"PARLEY_API_KEY": key_of(alice)})
    terminal.wait_for("No conversations yet.")
    terminal.type("From the terminal")
    terminal.wait_for("you> ")
    terminal.type("Hello over SSE")
    terminal.wait_for('claude> offline model: received 1 messages; last: "Hello over SSE"\n')
    status, errors = terminal.close()
    assert (status, errors) == (0, "")

    [conversation] = client.get("/v1/conversations", headers=alice).get_json()["data"]
    assert conversation["name"] == "From the terminal" and conversation["message_count"] == 2


def test_the_clock_tool_answers_claudes_call(client, api_url, alice):
    conversation = new_conversation(client, alice, name="what time")
    terminal = Terminal("--url", api_url, "--conversation", conversation, "--tool", "clock",
                        env={"PARLEY_API_KEY": key_of(alice)})
    terminal.wait_for("you> ")
    terminal.type('What time is it in Paris? call tool clock {"tz": "Europe/Paris"}')
    terminal.wait_for('claude> Calling clock.\n[tool clock {"tz": "Europe/Paris"}] -> ')
    terminal.wait_for("claude> The tool clock returned: ")
    terminal.type("call tool clock {\"tz\": \"Mars/Olympus\"}")
    terminal.wait_for("claude> The tool clock failed: unknown time zone 'Mars/Olympus'")
    status, errors = terminal.close()
    assert (status, errors) == (0, "")
    stored = client.get(f"/v1/conversations/{conversation}", headers=alice).get_json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"] * 4
    assert stored[3]["content"].startswith("The tool clock returned: 20") and \
        stored[3]["content"].endswith(("+01:00 (Europe/Paris)", "+02:00 (Europe/Paris)"))


def test_ctrl_c_cancels_the_reply_and_the_chat_goes_on(client, api_url, alice, model):
    conversation = new_conversation(client, alice, name="cancel me")
    model(chunk_chars=4, stream_delay_ms=30_000)  # the reply trickles out for half a minute
    terminal = Terminal("--url", api_url, "--key", key_of(alice), "--conversation", conversation)
    terminal.wait_for("you> ")
    terminal.type("Tell me a long story")
    terminal.wait_for("claude> offl")
    terminal.process.send_signal(signal.SIGINT)
    terminal.wait_for("[cancelled]\nyou> ")
    model(stream_delay_ms=0)
    status, errors = terminal.close()
    assert status == 0 and "Traceback" not in errors

    jobs = client.get(f"/v1/conversations/{conversation}", headers=alice).get_json()
    assert jobs["message_count"] == 0, "a cancelled reply writes no turn"
    with_status = [wait_job(client, alice, job_id) for job_id in _job_ids(client, alice, conversation)]
    assert [job["status"] for job in with_status] == ["cancelled"]


def _job_ids(client, headers, conversation: str) -> list[str]:
    # The API lists no jobs per conversation; the database does.
    from sqlalchemy import select

    from shared.models import Job

    services = client.application.extensions["parley"].services
    with services.sessions() as session:
        return [str(i) for i in session.scalars(select(Job.id).where(Job.conversation_id == uuid.UUID(conversation)))]


def test_a_refused_key_is_one_clear_line(api_url):
    terminal = Terminal("--url", api_url, "--key", "pk_not_a_real_key")
    status, errors = terminal.close()
    assert status == 1
    assert errors.startswith("error: the API key was refused (unauthorized: ")
    assert "Traceback" not in errors and len(errors.splitlines()) == 1


def test_no_server_is_one_clear_line():
    url = f"http://127.0.0.1:{free_port()}"
    terminal = Terminal("--url", url, "--key", "pk_any")
    status, errors = terminal.close()
    assert status == 1
    assert errors == f"error: cannot connect to Parley at {url} (connection refused). Is it running? " \
                     "`make run` starts it.\n"
