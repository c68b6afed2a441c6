"""The stack's processes, one way for every caller: the command line of each (the API
under gunicorn, a turn worker, the webhook worker, Flower, the offline model) as
`make run` starts it (honcho gets the same lists, joined), and the handles the tests,
the bench and the soak hold their children by: `Child`, and `WorkerProcess` for a
Celery worker that a test may SIGKILL or SIGTERM.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from shared.config import ROOT, Settings

# What gunicorn and celery load; the bench may point these at a patched module.
API_APP, WORKER_APP = "api.wsgi:app", "worker.celery_app"
TURNS, WEBHOOKS = "parley.turns", "parley.webhooks"
DEFAULT_POOL = Settings.model_fields["worker_pool"].default
# Turn worker processes `make run` starts (WORKERS): one per core of the 2-core machine the
# defaults were measured on, as gunicorn's API_PROCESSES. A process runs Python on one core
# at a time, so one worker held 200 turns in flight to one core's speed (see README, Scaling).
DEFAULT_WORKERS = 2
# Webhook sends wait on the network, so their worker is threads whatever WORKER_POOL says.
WEBHOOK_POOL, WEBHOOK_CONCURRENCY = "threads", 8
WORKER_READY = " ready."

_UUID_OR_NUMBER = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+")


def api_argv(bind: str, app: str = API_APP, python: str = sys.executable) -> list[str]:
    return [python, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b", bind, app]


def worker_argv(queue: str, name: str, concurrency: int, pool: str, app: str = WORKER_APP,
                quick: bool = False, python: str = sys.executable) -> list[str]:
    """A Celery worker as `make run` starts one; `quick` (tests, bench, soak) drops gossip
    and mingle: such workers need not know each other, and start faster."""
    argv = [python, "-m", "celery", "-A", app, "worker", "--pool", pool, "--concurrency", str(concurrency),
            "-Q", queue, "-n", name, "-l", "INFO"]
    return [*argv, "--without-gossip", "--without-mingle"] if quick else argv


def webhook_worker_argv(name: str = "webhooks@%h", app: str = WORKER_APP, quick: bool = False,
                        python: str = sys.executable) -> list[str]:
    return worker_argv(WEBHOOKS, name, WEBHOOK_CONCURRENCY, WEBHOOK_POOL, app, quick, python)


def flower_argv(port: int, python: str = sys.executable) -> list[str]:
    """Flower on loopback only (worker/flower.py: Celery's `flower` command for the worker's
    app); its password goes in FLOWER_BASIC_AUTH, never here."""
    return [python, "-m", "worker.flower", "--address=127.0.0.1", f"--port={port}"]


def model_argv(port: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "offline_model", "--port", str(port)]


def answers(url: str) -> bool:
    """A GET of `url` (a health check) answers 200 now."""
    import httpx2

    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


class Child:
    """A child process writing to `logs/<name>.log` itself when `logs` is given, as `make
    run`'s write to its terminal (nothing relays their lines: devstack/supervisor.py);
    else its stderr is drained into `lines`. Up when `ready_line` shows in its output, or
    its URL answers. In a session of its own, so a Ctrl-C meant for the caller does not
    reach it: the caller stops it, in order."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path | None = None,
                 ready_line: str | None = None):
        self.name, self.ready_line, self.ready = name, ready_line, threading.Event()
        self.lines: list[str] = []
        self.log_path = logs / f"{name}.log" if logs is not None else None
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child has its own copy of the descriptor
                self._log_start = log.tell()
                self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log,
                                                start_new_session=True)
            return
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._drain, name=f"drain-{name}", daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if self.ready_line and self.ready_line in line:
                self.ready.set()

    def _logged_ready(self) -> bool:
        """The ready line is in what the child wrote to its log since it started."""
        if self.ready_line is None:
            return False
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return self.ready_line.encode() in log.read()

    def _tail(self) -> str:
        return f"see {self.log_path}" if self.log_path else "".join(self.lines[-40:])

    def wait_ready(self, url: str | None = None, timeout: float = 90) -> "Child":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); {self._tail()}")
            if url is None and self.log_path is None:
                if self.ready.wait(0.1):
                    return self
                continue
            if self._logged_ready() if url is None else answers(url):
                return self
            time.sleep(0.1)  # a file or a port to look at again: nothing to wait on
        self.kill()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; {self._tail()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (Celery's warm shutdown), then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def stop(self) -> None:
        try:
            self.terminate(30)
        except subprocess.TimeoutExpired:
            pass  # killed

    def problems(self) -> Counter:
        """Warnings and errors logged since the last call, by message with ids and numbers blanked."""
        found = Counter()
        if self.log_path is None:
            return found
        with open(self.log_path, errors="replace") as log:
            log.seek(getattr(self, "_read_to", 0))
            for line in log:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
                    found[f"{self.name}: " + _UUID_OR_NUMBER.sub("…", str(record.get("event", "")))[:160]] += 1
            self._read_to = log.tell()
        return found

    def tree(self) -> list:
        """This process and its children (gunicorn's workers), as psutil processes."""
        import psutil

        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


class WorkerProcess(Child):
    """A Celery worker (`worker_argv`, quick). Turns run on the pool `make run` starts
    (WORKER_POOL in `env`) unless `pool` says otherwise; webhooks on threads. `label`
    names its log file when that differs from the worker's name."""

    def __init__(self, env: dict, name: str, concurrency: int = 4, queue: str = TURNS, logs: Path | None = None,
                 pool: str | None = None, app: str = WORKER_APP, label: str | None = None):
        pool = pool or (env.get("WORKER_POOL", DEFAULT_POOL) if queue == TURNS else WEBHOOK_POOL)
        self.worker_name = name
        super().__init__(label or name, worker_argv(queue, f"{name}@%h", concurrency, pool, app, quick=True),
                         env, logs, WORKER_READY)

    @property
    def hostname(self) -> str:
        return f"{self.worker_name}@{socket.gethostname()}"
