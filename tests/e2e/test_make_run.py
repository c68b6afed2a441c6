"""`make run`'s stack from nothing: embedded services, the seed's curl commands, Ctrl-C;
with the Anthropic API or Bedrock (both served by the offline model when there are no credentials)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import psycopg
import pytest

from devstack.ports import free_port
from shared.config import ROOT, Settings

UNSET = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "STORAGE_URL", "S3_ENDPOINT_URL", "ANTHROPIC_API_KEY",
         "ANTHROPIC_BASE_URL")


class Stack:
    """The launcher as a child process; events fire as its output shows each part is up."""

    def __init__(self, var_dir: Path, port: int, **settings: str):
        env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("AWS_")}
        env.update(VAR_DIR=str(var_dir), PORT=str(port), FLOWER_PORT=str(free_port()), WORKER_CONCURRENCY="4",
                   PYTHONUNBUFFERED="1", **settings)
        self.lines: list[str] = []
        self.api_up, self.worker_up, self.key_shown = threading.Event(), threading.Event(), threading.Event()
        self.process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if "API key" in line:
                self.key_shown.set()
            if "Listening at:" in line:
                self.api_up.set()
            if " ready." in line:
                self.worker_up.set()

    def wait_ready(self) -> None:
        for event in (self.key_shown, self.api_up, self.worker_up):
            assert event.wait(90), "stack did not start:\n" + "".join(self.lines[-60:])


def curl(*args: str) -> dict:
    out = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# A fresh machine: no AWS credentials anywhere, and no instance metadata service to ask.
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
def test_make_run_serves_a_conversation_and_stops_cleanly(tmp_path, provider):
    port = free_port()
    stack = Stack(tmp_path / "var", port, LLM_PROVIDER=provider, **NO_AWS)
    try:
        stack.wait_ready()
        key = (tmp_path / "var" / "dev-api-key").read_text().strip()
        assert key in "".join(stack.lines), "the key is printed"
        # The chat page's address is printed, and gunicorn serves the page with its security headers.
        assert f"Chat    http://127.0.0.1:{port}/ " in "".join(stack.lines)
        page = subprocess.run(["curl", "-sS", "-i", "--max-time", "30", f"http://127.0.0.1:{port}/"],
                              capture_output=True, text=True, check=True).stdout
        assert "content-security-policy: default-src 'none'" in page.lower() and "<title>Parley</title>" in page
        auth = f"Authorization: Bearer {key}"
        base = f"http://127.0.0.1:{port}"
        tree = psutil.Process(stack.process.pid).children(recursive=True)

        # The seed's three curl commands, plus the key.
        conversation_id = curl("-X", "POST", f"{base}/new_chat", "-H", auth)["conversation_id"]
        reply = curl("-X", "POST", f"{base}/chat", "-H", auth, "-H", "Content-Type: application/json",
                     "-d", '{"user_input": "Hello, Parley"}')
        assert reply["conversation_id"] == conversation_id
        assert reply["response"] == 'offline model: received 1 messages; last: "Hello, Parley"'
        history = curl(f"{base}/get_conversation?conversation_id={conversation_id}", "-H", auth)
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]

        # The log is in the local folder, the rows in the embedded PostgreSQL.
        logs = list((tmp_path / "var" / "storage").rglob("*.json"))
        assert len(logs) == 1 and conversation_id in str(logs[0])
        answered_by = json.loads(logs[0].read_text())["messages"][1]["model"]
        assert answered_by == (Settings(_env_file=None).bedrock_model_id if provider == "bedrock" else Settings(_env_file=None).model)
        socket_dir = (tmp_path / "var" / "postgres" / "postmaster.pid").read_text().splitlines()[4]
        with psycopg.connect(host=socket_dir, dbname="postgres", user="postgres") as db:
            row = db.execute("SELECT message_count FROM conversations WHERE conversation_id = %s",
                             (conversation_id,)).fetchone()
        assert row == (2,)
    finally:
        stack.process.send_signal(signal.SIGINT)  # Ctrl-C
        stack.process.wait(60)
    assert stack.process.returncode is not None
    gone, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
