"""A newcomer's first hour, on one `make run` in a fresh copy of the repository: the
README's quick start as written (`make run`, `make user`, its curl block, the checker),
connections a client keeps idle and reuses, and a client generated from /openapi.json
by a standard generator driving a turn."""
from __future__ import annotations

import http.client
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack.ports import free_port
from shared.config import ROOT

UNSET = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "STORAGE_URL", "S3_ENDPOINT_URL", "ANTHROPIC_API_KEY",
         "ANTHROPIC_BASE_URL", "VAR_DIR", "PROMETHEUS_MULTIPROC_DIR")
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}
README_PORT = 5000
# Longer than gunicorn's old keep-alive (5 s, which reset reused connections) and than
# httpx's default pool expiry (5 s); far below the 75 s the server now keeps them.
IDLE_GAP_SECONDS = 8


def fresh_copy(target: Path) -> Path:
    """The working tree as a fresh clone would have it (tracked and new files, nothing
    ignored: no var/, no caches), sharing the installed virtualenv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees the venv as up to date
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def newcomer_env(**extra: str) -> dict:
    # A newcomer's shell: not inside `make test`'s make (whose MAKEFLAGS/MAKELEVEL make a nested
    # make print "Entering directory" lines), and no pytest or AWS settings.
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith(("AWS_", "PYTEST"))
           and k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKE_TERMOUT", "MAKE_TERMERR")}
    return {**env, **NO_AWS, "PYTHONUNBUFFERED": "1", **extra}


class MakeRun:
    """`make run` in `clone`, in the foreground of a child process; ready once it prints
    its key and gunicorn and the worker say they are up."""

    def __init__(self, clone: Path, port: int):
        self.clone, self.port, self.lines = clone, port, []
        self.ready = {"API key": threading.Event(), "Listening at:": threading.Event(), " ready.": threading.Event()}
        env = newcomer_env(PORT=str(port), FLOWER_PORT=str(free_port()), WORKER_CONCURRENCY="4")
        self.process = subprocess.Popen(["make", "run"], cwd=clone, env=env, text=True, start_new_session=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()
        for marker, event in self.ready.items():
            assert event.wait(120), f"make run: no {marker!r}:\n" + "".join(self.lines[-60:])

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            for marker, event in self.ready.items():
                if marker in line:
                    event.set()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    clone = fresh_copy(tmp_path_factory.mktemp("clone"))
    stale = subprocess.run(["make", "-q", ".venv/.installed"], cwd=clone, capture_output=True).returncode
    if stale:
        pytest.skip("the virtualenv is older than requirements*.txt: run `make install` (make test does)")
    # The README's port when it is free; any free one otherwise (the README's URLs follow).
    with socket.socket() as probe:
        port = README_PORT if probe.connect_ex(("127.0.0.1", README_PORT)) != 0 else free_port()
    run = MakeRun(clone, port)
    try:
        yield run
    finally:
        run.stop()


def shell(clone: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=clone, env=newcomer_env(**env), capture_output=True,
                          text=True, timeout=120)


def readme_block(after_heading: str) -> str:
    """The first ```sh block after `after_heading` in the README."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(after_heading):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def readme_commands(block: str) -> list[str]:
    """A block's commands, one a line, without comments or comment-only lines."""
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def json_values(text: str) -> list:
    """Each JSON value curl printed (`curl -s` adds no newline between them)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def test_the_readme_quick_start_works_beside_make_run(newcomer):
    clone, base = newcomer.clone, f"http://127.0.0.1:{newcomer.port}"

    # "In another terminal, while it runs", with nothing set: both find make run's services.
    make_user, check = readme_commands(readme_block("In another terminal, while it runs"))
    assert make_user.startswith("make user NAME=") and "worker.check" in check
    issued = shell(clone, make_user)
    assert issued.returncode == 0, issued.stderr
    alice_key = issued.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"pk_[A-Za-z0-9_-]{20,}", alice_key), issued.stdout

    # The API section's curl block, as written (only the port follows the one make run took).
    script = readme_block("## API").replace(f":{README_PORT}", f":{newcomer.port}")
    walked = shell(clone, "set -e -o pipefail\n" + script)
    assert walked.returncode == 0, walked.stdout + walked.stderr
    outputs = json_values(walked.stdout)
    job = next(o for o in outputs if "status" in o)
    assert job["status"] == "succeeded" and job["reply"]["content"], job
    conversation = next(o for o in outputs if "messages" in o)
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert any(o.get("name") == "Lisbon" for o in outputs), "the PATCH answered with the renamed conversation"

    # Alice's key works at once, and sees none of the dev user's conversations.
    listed = shell(clone, f'curl -s {base}/v1/conversations -H "Authorization: Bearer {alice_key}"')
    assert json.loads(listed.stdout) == {"data": [], "next_cursor": None}

    # The consistency checker finds the turns just written, and nothing wrong with them.
    checked = shell(clone, check)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_idle_connections_are_reused_without_a_reset(newcomer):
    """Clients keep connections open between requests (httpx: 5 s; load balancers: 60 s)
    and reuse them; the server must not close one just as it is reused."""
    key = (newcomer.clone / "var" / "dev-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    connections = [http.client.HTTPConnection("127.0.0.1", newcomer.port, timeout=30) for _ in range(20)]

    def request(connection: http.client.HTTPConnection) -> tuple[int, socket.socket]:
        connection.request("GET", "/v1/models", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.getheader("Connection", "").lower() != "close"
        return response.status, connection.sock

    try:
        with ThreadPoolExecutor(len(connections)) as pool:
            first = list(pool.map(request, connections))
            time.sleep(IDLE_GAP_SECONDS)  # the gap is the scenario: nothing to wait for
            again = list(pool.map(request, connections))
    finally:
        for connection in connections:
            connection.close()
    assert [status for status, _ in first + again] == [200] * (2 * len(connections))
    assert [sock for _, sock in first] == [sock for _, sock in again], "each request reused its connection"


def test_a_generated_client_drives_a_turn(newcomer, tmp_path):
    """openapi-python-client turns /openapi.json into a package; that package, and nothing
    written here, creates a conversation, sends a message, waits for the reply, reads it."""
    base = f"http://127.0.0.1:{newcomer.port}"
    tools = str(Path(sys.executable).parent)  # the generator formats its output with ruff, from the venv
    generated = subprocess.run(
        [str(Path(tools) / "openapi-python-client"), "generate", "--url", f"{base}/openapi.json", "--meta", "none",
         "--output-path", str(tmp_path / "parley_generated")],
        cwd=tmp_path, env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}, capture_output=True, text=True,
        timeout=120)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("parley_generated")
        api = importlib.import_module("parley_generated.api.conversations")
        create = importlib.import_module(f"{api.__name__}.conversations_create_post")
        post = importlib.import_module(f"{api.__name__}.conversations_post_message_conversation_id_messages_post")
        read = importlib.import_module(f"{api.__name__}.conversations_read_conversation_id_get")
        job_read = importlib.import_module("parley_generated.api.jobs.jobs_read_job_id_get")
        models = importlib.import_module("parley_generated.models")

        key = (newcomer.clone / "var" / "dev-api-key").read_text().strip()
        with package.AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True) as client:
            conversation = create.sync(client=client, body=models.ConversationIn(name="generated"))
            assert isinstance(conversation, models.Conversation), conversation
            queued = post.sync(conversation.id, client=client, body=models.MessageIn(content="Hello from a client"))
            assert isinstance(queued, models.JobEnvelope), queued
            job = job_read.sync(queued.job.id, client=client, wait=30)
            assert job.status == models.JobStatus.SUCCEEDED, job
            assert "Hello from a client" in job.reply.content
            history = read.sync(conversation.id, client=client)
            assert [(m.role.value, m.content) for m in history.messages] == [
                ("user", "Hello from a client"), ("assistant", job.reply.content)]
            missing = read.sync_detailed("00000000-0000-0000-0000-000000000000", client=client)
            assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorEnvelope)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.split(".")[0] == "parley_generated"]:
            del sys.modules[name]


def test_once_make_run_stops_the_tools_say_to_start_it(newcomer):
    newcomer.stop()  # the module's last test: the stack is not needed after this
    assert newcomer.process.returncode is not None
    assert not (newcomer.clone / "var" / "services.json").exists(), "make run forgets its services when it stops"
    refused = shell(newcomer.clone, "make user NAME=bob")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "config error: DATABASE_URL: not set, and no `make run` is running" in refused.stderr
