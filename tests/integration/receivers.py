"""Hostile webhook receivers on real sockets: each answers in its own bad way and notes
whether Parley hung up on it."""
from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# One trickled byte per this many seconds: slow enough to outlast any test deadline.
TRICKLE_SECONDS = 0.05


class RawReceiver:
    """A TCP listener; every connection's request is read and recorded, then `answer(connection)`
    writes whatever it likes. `dropped` is set once a write fails because the caller hung up."""

    def __init__(self, answer: Callable[[socket.socket, RawReceiver], None], host: str = "127.0.0.1",
                 port: int = 0, tls: ssl.SSLContext | None = None):
        self.answer, self.tls = answer, tls
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.arrived, self.dropped, self.closed = threading.Event(), threading.Event(), threading.Event()
        self.sent = 0
        self.listener = socket.create_server((host, port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            self.requests.append(_read_request(connection))
            self.arrived.set()
            self.answer(connection, self)
        except ssl.SSLError:
            pass  # the caller refused our certificate
        except OSError:
            self.dropped.set()
        finally:
            connection.close()

    def send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()


class Resolver:
    """Answers each lookup with the next of `answers` (the last one repeats), and counts lookups."""

    def __init__(self, *answers: list[str]):
        self.answers, self.lookups = list(answers), 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return self.answers[min(self.lookups, len(self.answers)) - 1]


def _read_request(connection: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed before the request ended")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += connection.recv(65536)
    return head, body


def header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode().partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def trickle(text: bytes) -> Callable[[socket.socket, RawReceiver], None]:
    """Sends `text` one byte at a time, TRICKLE_SECONDS apart."""
    def answer(connection: socket.socket, receiver: RawReceiver) -> None:
        for byte in text:
            receiver.send(connection, bytes([byte]))
            if receiver.closed.wait(TRICKLE_SECONDS):
                return
    return answer


def trickled_status(length: int = 400) -> Callable[[socket.socket, RawReceiver], None]:
    """The response's first line, never finished in time."""
    return trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * length + b"\r\nContent-Length: 0\r\n\r\n")


def trickled_body(length: int = 400) -> Callable[[socket.socket, RawReceiver], None]:
    """Headers at once (200), then a body one byte at a time."""
    def answer(connection: socket.socket, receiver: RawReceiver) -> None:
        receiver.send(connection, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
        trickle(b"x" * length)(connection, receiver)
    return answer


def endless_body(limit: int) -> Callable[[socket.socket, RawReceiver], None]:
    """200, then body as fast as the caller takes it, up to `limit` bytes (so that a caller
    that reads it all still ends)."""
    block = b"x" * 65536

    def answer(connection: socket.socket, receiver: RawReceiver) -> None:
        receiver.send(connection, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % limit)
        while receiver.sent < limit:
            receiver.send(connection, block)
    return answer


def status(code: int, *headers: bytes) -> Callable[[socket.socket, RawReceiver], None]:
    def answer(connection: socket.socket, receiver: RawReceiver) -> None:
        receiver.send(connection, b"HTTP/1.1 %d X\r\n%bContent-Length: 0\r\nConnection: close\r\n\r\n"
                      % (code, b"".join(h + b"\r\n" for h in headers)))
    return answer


def in_turn(*answers: Callable[[socket.socket, RawReceiver], None]) -> Callable[[socket.socket, RawReceiver], None]:
    """The first request gets the first answer, the second the second, and so on (the last repeats)."""
    def answer(connection: socket.socket, receiver: RawReceiver) -> None:
        answers[min(len(receiver.requests), len(answers)) - 1](connection, receiver)
    return answer


def certificates(folder: Path, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for `host`, client context trusting only its CA)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Parley test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return server, ssl.create_default_context(cafile=str(folder / "ca.pem"))
