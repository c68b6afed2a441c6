"""The API's gunicorn worker: gunicorn's gevent worker, except that told to stop (SIGTERM,
a deploy) it also closes its idle keep-alive connections.

gunicorn's gevent worker stops accepting, lets the requests in progress finish (each one
then closes its connection), and exits when no connection is left. But an idle keep-alive
connection waits for its next request for KEEPALIVE seconds (75, api/gunicorn_conf.py),
so one idle client kept every stopping process alive for the whole graceful timeout
(30 s). Here the connections between requests are closed at once; a request in progress,
an open event stream or a long-poll is still answered in full.
"""
from __future__ import annotations

import socket

import gevent
from gunicorn.workers.ggevent import GeventWorker


class DrainingGeventWorker(GeventWorker):
    def init_process(self) -> None:
        self._idle: set[socket.socket] = set()  # connections between requests
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        self._idle.add(client)
        try:
            super().handle(listener, client, addr)
        finally:
            self._idle.discard(client)

    def handle_request(self, listener_name, req, sock, addr):
        self._idle.discard(sock)
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if self.alive:
                self._idle.add(sock)
            else:  # answered while stopping: no next request on this connection
                _close(sock)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_idle)  # out of the signal handler, as gunicorn does for its own

    def _close_idle(self) -> None:
        for client in list(self._idle):
            _close(client)


def _close(client: socket.socket) -> None:
    """End a connection between requests: its handler, waiting for the next, reads the end
    and returns."""
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, by the peer or by gunicorn
