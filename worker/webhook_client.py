"""One webhook attempt against a receiver Parley does not trust.

The callback host is resolved once, every address it gets is vetted
(shared/webhooks.refused_addresses), and the connection goes to a vetted address while
the Host header, TLS SNI and the certificate check keep the original host: a DNS answer
that changes between the check and the connect cannot steer the request elsewhere.

One wall-clock deadline (WEBHOOK_TIMEOUT_SECONDS) covers resolving, connecting, TLS,
sending and the response headers: every socket operation gets at most what is left of
it. Then at most MAX_RESPONSE_BYTES of the body are read and dropped, still within the
deadline. Redirects are never followed. A proxy is used only when WEBHOOK_PROXY_URL
names one; the HTTP_PROXY family of variables is ignored (httpcore2, httpx2's transport
layer, never reads proxy variables; httpx2 itself would).
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpcore2
import httpx2

from shared.webhooks import refused_addresses

# Enough for any receiver's "ok"; the rest is never read.
MAX_RESPONSE_BYTES = 64 * 1024
# Writes go out in pieces this small, so no single send can wait much past the deadline.
_WRITE_PIECE = 4096

# `resolve(host, port)` -> the host's addresses, in the order to try them.
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    permanent: bool = False  # refused by policy: trying again cannot help

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeadlineExceeded(Exception):
    pass


class Deadline:
    def __init__(self, seconds: float):
        self.seconds, self._ends = seconds, time.monotonic() + seconds

    def cap(self, timeout: float | None, error: type[Exception]) -> float:
        """`timeout` cut to what is left of the deadline; `error` once nothing is."""
        left = self._ends - time.monotonic()
        if left <= 0:
            raise error(f"the {self.seconds:g} s deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream, deadline: Deadline):
        self._stream, self._deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.cap(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_PIECE):
            self._stream.write(view[start:start + _WRITE_PIECE], self._deadline.cap(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        timeout = self._deadline.cap(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """The standard socket backend with every operation bounded by one deadline."""

    def __init__(self, deadline: Deadline):
        self._deadline, self._sockets = deadline, httpcore2.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore2.NetworkStream:
        timeout = self._deadline.cap(timeout, httpcore2.ConnectTimeout)
        stream = self._sockets.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)


class WebhookClient:
    """Posts a signed body to a callback URL, one bounded attempt at a time."""

    def __init__(self, timeout: float, *, allow_private: bool = False, proxy_url: str | None = None,
                 resolver: Resolver = system_resolver, ssl_context: ssl.SSLContext | None = None):
        self.timeout, self.allow_private, self.resolver = timeout, allow_private, resolver
        self.proxy = httpx2.Proxy(url=proxy_url) if proxy_url else None
        if self.proxy is not None and self.proxy.url.scheme not in ("http", "https"):
            raise ValueError(f"WEBHOOK_PROXY_URL: an http:// or https:// proxy, not {self.proxy.url.scheme!r}")
        self.ssl_context = ssl_context or httpcore2.default_ssl_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        started, deadline = time.monotonic(), Deadline(self.timeout)

        def outcome(status_code: int | None, error: str | None = None, permanent: bool = False) -> Attempt:
            return Attempt(status_code, error and error[:500], int((time.monotonic() - started) * 1000), permanent)

        target = httpx2.URL(url)
        host, port = target.raw_host.decode("ascii"), target.port or (443 if target.scheme == "https" else 80)
        try:
            addresses = _resolve(self.resolver, host, port, deadline)
        except DeadlineExceeded:
            return outcome(None, f"resolving {host!r} took longer than the {self.timeout:g} s deadline")
        except (OSError, UnicodeError) as error:
            return outcome(None, f"cannot resolve {host!r}: {error}")
        if not self.allow_private and (refusal := refused_addresses(host, addresses)):
            return outcome(None, f"refused: {refusal}", permanent=True)

        headers = {"Host": target.netloc.decode("ascii"), **headers, "Content-Length": str(len(body))}
        error = f"{host!r} resolves to no address"
        for address in addresses:  # the next address only when this one could not be reached at all
            try:
                status = self._exchange(target, address, body, headers, deadline)
            except httpcore2.ConnectError as failure:
                error = f"cannot connect to {address}{' through the proxy' if self.proxy else ''}: {failure}"
                continue
            except httpcore2.TimeoutException:
                return outcome(None, f"no response within the {self.timeout:g} s deadline")
            except (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.ProxyError) as failure:
                return outcome(None, f"{type(failure).__name__}: {failure}")
            return outcome(status, "redirect not followed" if 300 <= status < 400 else None)
        return outcome(None, error)

    def _exchange(self, target: httpx2.URL, address: str, body: bytes, headers: dict[str, str],
                  deadline: Deadline) -> int:
        """The status code from `address`; the body is read up to the cap, then dropped."""
        host = address.split("%")[0] if self.proxy is None else _url_host(address)
        pinned = httpcore2.URL(scheme=target.raw_scheme, host=host.encode("ascii"), port=target.port,
                               target=target.raw_path)
        # SNI and the certificate check name the host the user gave, not the address.
        extensions = {"sni_hostname": target.raw_host.decode("ascii"),
                      "timeout": {"connect": self.timeout, "read": self.timeout, "write": self.timeout,
                                  "pool": self.timeout}}
        with self._pool(deadline) as pool, pool.stream("POST", pinned, headers=headers, content=body,
                                                       extensions=extensions) as response:
            received = 0
            try:
                for chunk in response.iter_stream():
                    received += len(chunk)
                    if received >= MAX_RESPONSE_BYTES:
                        break
            except (httpcore2.TimeoutException, httpcore2.NetworkError, httpcore2.ProtocolError):
                pass  # the status is the answer; the body is only read to end the exchange politely
            return response.status

    def _pool(self, deadline: Deadline) -> httpcore2.ConnectionPool:
        backend = _DeadlineBackend(deadline)
        if self.proxy is None:
            return httpcore2.ConnectionPool(ssl_context=self.ssl_context, max_connections=1,
                                            max_keepalive_connections=0, retries=0, network_backend=backend)
        proxy_url = self.proxy.url
        return httpcore2.HTTPProxy(
            proxy_url=httpcore2.URL(scheme=proxy_url.raw_scheme, host=proxy_url.raw_host, port=proxy_url.port,
                                    target=proxy_url.raw_path),
            proxy_auth=self.proxy.raw_auth, proxy_headers=self.proxy.headers.raw, ssl_context=self.ssl_context,
            max_connections=1, max_keepalive_connections=0, network_backend=backend)


def _url_host(address: str) -> str:
    """An address as a URL writes it (IPv6 in brackets), for the proxy's request line."""
    return f"[{address}]" if ipaddress.ip_address(address.split("%")[0]).version == 6 else address


def _resolve(resolver: Resolver, host: str, port: int, deadline: Deadline) -> list[str]:
    """The host's addresses, within the deadline. A slow DNS answer is left to finish in
    its own thread (the system resolver has its own timeouts); the attempt goes on."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    answer: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            answer["addresses"] = resolver(host, port)
        except Exception as error:  # handed to the waiting attempt
            answer["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name="webhook-resolve", daemon=True).start()
    if not done.wait(deadline.cap(None, DeadlineExceeded)):
        raise DeadlineExceeded(host)
    if "error" in answer:
        raise answer["error"]
    return answer["addresses"]
