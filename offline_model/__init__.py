"""Local stand-in for the Anthropic Messages API, for tests and offline development."""

from __future__ import annotations

import threading

from .server import OfflineHTTPServer

__all__ = ["OfflineModelServer"]


class OfflineModelServer:
    """Runs the offline model in a daemon thread; usable as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay_ms: int | None = None) -> None:
        self.httpd = OfflineHTTPServer((host, port), delay_ms=delay_ms)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "OfflineModelServer":
        if self._thread is None:
            # A short poll interval keeps stop() from lingering up to the default 0.5 s.
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, args=(0.05,), name="offline-model", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "OfflineModelServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
