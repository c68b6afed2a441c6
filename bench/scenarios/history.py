"""8. History: reading conversations of ~1,000 and ~10,000 turns from S3, storage far away.

moto's S3 server runs as its own process behind a proxy that holds each request
`delay` ms before passing it on (20 ms: a bucket in the same region; 100 ms: a slow
one). A second API process reads the log through that proxy. Conversations are seeded
straight into PostgreSQL and moto (rows + one object per turn, as the pipeline writes
them, each turn row with its copy of the entry). Per size and delay: the newest page of
50 messages, a page from the middle, and the full NDJSON export, beside the read as it
was before paging (one GET after another, timed on a sample of turns and scaled to the
whole conversation). A conversation of the smaller size seeded as turns were written
before rows kept their entries shows what such an older page costs the first time it is
read (from the log, in parallel) and after (its copies kept).
"""
from __future__ import annotations

import os
import sys
import time
import uuid

import httpx2
from sqlalchemy import select

from api.history import encode_cursor
from bench import seed
from bench.report import Result, noise, percentile
from bench.stack import BenchStack, Child, free_port
from devstack.services import SwitchableProxy
from shared.models import Turn
from shared.storage import make_log_store

BUCKET = "parley-bench-history"
CREDENTIALS = ("bench", "bench-secret")
MESSAGE_CHARS = 300  # ~650 bytes a turn in the log, as measured for the 1,000-turn conversation
PAGE = 50
SEQUENTIAL_SAMPLE = 40  # turns read one after another to time the old whole read


class DelayingProxy(SwitchableProxy):
    """Holds every chunk a client sends for `delay_ms` before the server sees it: each
    request (one chunk for a GET) arrives that much later, on every connection at once."""
    delay_ms = 0

    def _pump(self, source, target) -> None:
        if source.getsockname()[1] == self.port:  # the client's side of an accepted connection
            source = _Held(source, self)
        super()._pump(source, target)


class _Held:
    def __init__(self, sock, proxy: DelayingProxy):
        self._sock, self._proxy = sock, proxy

    def recv(self, size: int) -> bytes:
        chunk = self._sock.recv(size)
        if chunk and self._proxy.delay_ms:
            time.sleep(self._proxy.delay_ms / 1000)
        return chunk

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _ms(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 1)}


def _timed(call, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def run(stack: BenchStack, quick: bool) -> Result:
    sizes, delays = ((205, 1005) if quick else (1005, 10005)), (0, 20, 100)
    pages, exports = (5, 1) if quick else (20, 2)
    saved = {name: os.environ.get(name) for name in ("AWS_DEFAULT_REGION",)}
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    moto_port = free_port()
    moto = Child("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                 stack.env, stack.logs).wait_ready(f"http://127.0.0.1:{moto_port}/moto-api/")
    proxy = DelayingProxy(("127.0.0.1", moto_port))
    api = http = None
    try:
        direct = make_log_store(f"s3://{BUCKET}/logs", f"http://127.0.0.1:{moto_port}", CREDENTIALS)
        direct.client.create_bucket(Bucket=BUCKET)
        seeded, began = {}, time.monotonic()
        for turns in sizes:
            seeded[turns] = seed.history(stack.services, stack.user, 2 * turns, MESSAGE_CHARS, store=direct)
        older = [seed.history(stack.services, stack.user, 2 * sizes[0], MESSAGE_CHARS, store=direct, copies=False)
                 for _ in delays]
        seconds_to_seed = time.monotonic() - began
        env = {**stack.env, "STORAGE_URL": f"s3://{BUCKET}/logs", "S3_ENDPOINT_URL": proxy.url,
               "S3_ACCESS_KEY_ID": CREDENTIALS[0], "S3_SECRET_ACCESS_KEY": CREDENTIALS[1],
               "AWS_DEFAULT_REGION": "us-east-1", "API_PROCESSES": "1", "API_THREADS": "8",
               "VAR_DIR": str(stack.base / "var-history")}
        api_url = f"http://127.0.0.1:{free_port()}"
        api = Child("api-s3", [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b",
                               api_url.removeprefix("http://"), stack.api_app], env, stack.logs)
        api.wait_ready(api_url + "/healthz")
        http = httpx2.Client(base_url=api_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=600)
        proxied = make_log_store(f"s3://{BUCKET}/logs", proxy.url, CREDENTIALS)
        figures: dict = {}
        for delay, older_id in zip(delays, older):
            proxy.delay_ms = delay
            for turns in sizes:
                figures[f"{turns} turns, {delay} ms"] = _measure(stack, http, proxied, seeded[turns], turns,
                                                                 pages, exports if delay else 0)
            figures[f"{sizes[0]} older turns, {delay} ms"] = _older(http, older_id)
    finally:
        if http is not None:
            http.close()
        for child in (api, moto):
            if child is not None:
                child.stop()
        proxy.stop()
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    return _result(figures, sizes, seconds_to_seed, quick)


def _measure(stack: BenchStack, http: httpx2.Client, proxied, conversation_id: str, turns: int,
             pages: int, exports: int) -> dict:
    base = f"/v1/conversations/{conversation_id}"

    def page(**query) -> None:
        response = http.get(base + "/messages", params={"limit": PAGE, **query})
        response.raise_for_status()
        assert len(response.json()["data"]) == PAGE

    def export() -> None:
        lines = 0
        with http.stream("GET", base + "/export") as response:
            response.raise_for_status()
            for _ in response.iter_lines():
                lines += 1
        assert lines == 2 * turns, lines

    middle = encode_cursor(turns)
    page(), page(before=middle)  # warm: connections
    newest = _timed(page, pages)
    found = {"newest_page": _ms(newest), "middle_page": _ms(_timed(lambda: page(before=middle), pages)),
             "noise": noise(newest)}
    if exports:
        found["export_s"] = [round(t, 2) for t in _timed(export, exports)]
        found["sequential_estimate_s"] = round(_sequential_per_turn(stack, proxied, conversation_id) * turns, 1)
    return found


def _older(http: httpx2.Client, conversation_id: str) -> dict:
    """The newest page of a conversation whose rows keep no copies: read from the log the
    first time (25 GETs in parallel), from the copies that read kept after."""
    def page() -> None:
        http.get(f"/v1/conversations/{conversation_id}/messages", params={"limit": PAGE}).raise_for_status()
    first = _timed(page, 1)
    return {"first_read_ms": round(first[0] * 1000, 1), "after": _ms(_timed(page, 5))}


def _sequential_per_turn(stack: BenchStack, proxied, conversation_id: str) -> float:
    """The read before paging: one GET after another. Seconds per turn over a sample."""
    with stack.services.sessions() as session:
        keys = session.scalars(select(Turn.log_key).where(Turn.conversation_id == uuid.UUID(conversation_id))
                               .order_by(Turn.seq).limit(SEQUENTIAL_SAMPLE)).all()
    started = time.perf_counter()
    for key in keys:
        proxied.get(key)
    return (time.perf_counter() - started) / len(keys)


def _result(figures: dict, sizes: tuple[int, int], seconds_to_seed: float, quick: bool) -> Result:
    small, large = sizes
    result = Result(8, "history", config={"turns": list(sizes), "page": PAGE, "message_chars": MESSAGE_CHARS,
                                          "storage": "moto S3 server (own process) behind a delaying proxy"})
    at20 = {n: figures[f"{n} turns, 20 ms"] for n in sizes}
    result.check(f"page p50 at 20 ms, {large} turns", at20[large]["newest_page"]["p50_ms"], "<=", 50, " ms")
    result.check(f"page p50 ratio {large}/{small} turns", at20[large]["newest_page"]["p50_ms"]
                 / at20[small]["newest_page"]["p50_ms"], "<=", 1.2)
    export_100 = figures[f"{large} turns, 100 ms"]["export_s"]
    result.check(f"export of {large} turns at 100 ms", percentile(export_100, 50), "<=", 10, " s")
    for label, found in figures.items():
        if "older" in label:
            result.show(label, f"newest page: first read {found['first_read_ms']:g} ms (from the log), "
                               f"then p50 {found['after']['p50_ms']:g} ms (from the copies it kept)")
            continue
        text = (f"newest p50 {found['newest_page']['p50_ms']:g} / p95 {found['newest_page']['p95_ms']:g} ms, "
                f"middle p50 {found['middle_page']['p50_ms']:g} / p95 {found['middle_page']['p95_ms']:g} ms")
        if "export_s" in found:
            text += (f"; export {', '.join(f'{s:g}' for s in found['export_s'])} s; one GET after another "
                     f"(before) ≈ {found['sequential_estimate_s']:g} s")
        result.show(label, text)
    result.show("seeding", f"{seconds_to_seed:.0f} s for {small + large} turns")
    result.figures.update(by_size_and_delay=figures, seconds_to_seed=round(seconds_to_seed, 1))
    return result
