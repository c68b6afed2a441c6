"""Flower never runs open, and what it shows of a task (its arguments) is a job id only.

docker-compose.yml's Flower (loopback port, required credentials) is checked in
tests/config/test_compose.py; this covers `make run`'s Flower and the task messages.
"""
from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from typing import Iterator

import requests

from devstack.__main__ import flower
from devstack.ports import free_port
from shared.config import ROOT
from shared.tasks import make_celery
from tests.security.support import WAIT, WebhookReceiver, bearer, finished_job, new_key

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
JOB_ID_ONLY = re.compile(rf"[\[(]'{UUID}',?[\])]")  # ['<job id>'] as Celery's events show it


def test_make_run_flower_is_loopback_only_with_the_password_off_the_command_line():
    command, env = flower("python", 5555, "s3cret-pw", {"PATH": "/bin"})
    assert "--address=127.0.0.1" in command.split()
    assert "s3cret-pw" not in command and "--basic-auth" not in command, "ps shows every command line"
    assert env["FLOWER_BASIC_AUTH"] == "parley:s3cret-pw" and env["PATH"] == "/bin"


@contextlib.contextmanager
def running_flower(stack, password: str, **env: str) -> Iterator[str]:
    """`make run`'s Flower (its command and environment) beside the stack; its base URL."""
    port = free_port()
    command, flower_env = flower(shlex.quote(sys.executable), port, password, {**stack.env, **env})
    process = subprocess.Popen(shlex.split(command), cwd=ROOT, env=flower_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    listening, lines = threading.Event(), []

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if "Visit me at" in line:
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(60), "flower did not start:\n" + "".join(lines[-20:])
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


def test_make_run_flower_refuses_requests_without_the_password(stack):
    password = secrets.token_urlsafe(12)
    with running_flower(stack, password) as base:
        for path in ("/", "/tasks", "/api/tasks", "/api/workers"):
            assert requests.get(base + path, timeout=10).status_code == 401, path
            assert requests.get(base + path, auth=("parley", "wrong"), timeout=10).status_code == 401, path
        assert requests.get(base + "/", auth=("parley", password), timeout=10).status_code == 200


def test_make_run_flower_keeps_the_newest_tasks_up_to_flower_max_tasks(stack, client):
    """Flower holds its tasks in memory (worker/flower.py): FLOWER_MAX_TASKS bounds them.
    The stack's workers may run other tasks meanwhile (an earlier test's webhook retries),
    and those count too, so the check is the bound, the newest turn kept and the oldest gone."""
    password, headers = secrets.token_urlsafe(12), bearer(new_key(stack))
    with running_flower(stack, password, FLOWER_MAX_TASKS="2") as base:
        jobs = [finished_job(client, headers, client.post("/v1/conversations", json={}, headers=headers)
                             .get_json()["id"], f"turn {n}")["id"] for n in range(3)]
        deadline = time.monotonic() + WAIT  # Flower reads the events on its own: look until the last is in
        while True:
            tasks = requests.get(base + "/api/tasks", auth=("parley", password), timeout=10).json()
            shown = " ".join(str(task.get("args")) for task in tasks.values())
            if jobs[2] in shown or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert jobs[2] in shown, "the newest turn's task is shown"
        assert len(tasks) <= 2 and jobs[0] not in shown, tasks


class TaskEvents:
    """Celery's task events, the ones Flower shows, read off the stack's broker."""

    def __init__(self, stack):
        self.celery = make_celery(stack.settings, "parley-test-events")
        self.events, self.changed = [], threading.Condition()
        self.connection = self.celery.connection_for_read()
        self.receiver = self.celery.events.Receiver(self.connection, handlers={"*": self._on_event})
        self.thread = threading.Thread(target=self.receiver.capture, kwargs={"wakeup": False}, daemon=True)
        self.thread.start()
        # The receiver subscribes inside its loop: probe until a probe comes back.
        with self.celery.events.default_dispatcher() as dispatcher:
            for _ in range(100):
                dispatcher.send("parley-probe")
                if self.wait_for(lambda e: e["type"] == "parley-probe", timeout=0.2):
                    return
        raise AssertionError("the event receiver never started")

    def _on_event(self, event: dict) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(predicate(e) for e in self.events), timeout)

    def close(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.connection.release()


def test_tasks_carry_a_job_id_and_nothing_else(stack, client):
    headers, receiver, events = bearer(new_key(stack)), WebhookReceiver(), TaskEvents(stack)
    try:
        conversation_id = client.post("/v1/conversations", json={}, headers=headers).get_json()["id"]
        jobs = [client.post(f"/v1/conversations/{conversation_id}/messages", headers=headers,
                            json={"content": f"turn {n}", "callback_url": receiver.url}).get_json()["job"]["id"]
                for n in range(2)]  # the second is sent by the worker when the first ends
        for job_id in jobs:
            assert client.get(f"/v1/jobs/{job_id}?wait={WAIT}", headers=headers).get_json()["status"] == "succeeded"
            # The API sends no task-sent events (shared/tasks.py); a worker sends a task's
            # name and arguments with its task-started (worker/task_events.py).
            for kind in ("task-started",):
                assert events.wait_for(lambda e: e["type"] == kind and job_id in e.get("args", "")), (kind, job_id)
        assert receiver.arrived.wait(WAIT), "the webhook was delivered"
        assert events.wait_for(lambda e: e["type"] == "task-started" and e.get("name") == "parley.deliver_webhook")
    finally:
        events.close()
        receiver.close()
    shown = [e for e in events.events if "args" in e or "kwargs" in e]
    assert {e["name"] for e in shown} >= {"parley.reply", "parley.deliver_webhook"}
    for event in shown:
        assert JOB_ID_ONLY.fullmatch(event["args"]) and event["kwargs"] == "{}", event
    # Two events a task, not three: a task without an ETA says it was received when it starts.
    assert not [e for e in events.events if e["type"] == "task-received"]
