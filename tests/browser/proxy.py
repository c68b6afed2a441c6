"""A TCP proxy in front of the page's server that can drop every open connection at
once, the way a flaky network does, and keeps what the browser sent so a test can see
how it resumed.

One thread per connection relays both directions and is the only one that closes its
sockets; `cut()` only shuts them down (which wakes that thread). Closing a socket from
another thread would free its descriptor while a relay may still be about to use the
number, which a new connection can by then have been given.
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading


class CuttableProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()  # every byte from the browser, chunk by chunk
        self._open: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()  # held while a connection is shut down or closed
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        with self._lock:
            for pair in self._open:
                for sock in pair:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            return len(self._open)

    def close(self) -> None:
        self.listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                browser, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                browser.close()
                continue
            browser.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._open.add((browser, server))
            threading.Thread(target=self._relay, args=(browser, server), name="proxy-relay", daemon=True).start()

    def _relay(self, browser: socket.socket, server: socket.socket) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(browser, selectors.EVENT_READ, server)
                selector.register(server, selectors.EVENT_READ, browser)
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        if key.fileobj is browser:
                            self.sent.extend(data)
                        key.data.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard((browser, server))
                browser.close()
                server.close()
