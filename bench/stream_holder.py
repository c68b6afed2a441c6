"""A process holding thousands of open waits on the API with raw asyncio sockets (an
HTTP client library would cost more CPU than the server it measures, on the same cores).

Commands on a queue: ("open", [(kind, job_id, key), ...]) opens them and answers
(opened, failures) once each has its response headers; ("count",) answers
(still open, drop reasons); ("collect", deltas) waits until every wait has ended and
answers (complete, what was wrong); ("stop",).
"""
from __future__ import annotations

import asyncio
import json
import queue
from urllib.parse import urlsplit

OPEN_AT_ONCE = 200  # connections being opened at a time (the listen backlog is finite)
OPEN_SECONDS = 30  # a wait without its response headers by then counts as not open (and stays queued)
COLLECT_SECONDS = 120


class Wait:
    def __init__(self, kind: str, job_id: str, key: str):
        self.kind, self.job_id, self.key = kind, job_id, key
        self.events: list[tuple[int, str, dict]] = []  # a stream's (id, type, data)
        self.job: dict | None = None  # a long-poll's last answer
        self.open, self.done, self.error = False, False, None
        self.headers_in = asyncio.Event()


async def _headers(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _request(host: str, path: str, key: str, accept: str, close: bool) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nAccept: {accept}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


async def _stream(host: str, port: int, wait: Wait) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=2**20)
    try:
        writer.write(_request(host, f"/v1/jobs/{wait.job_id}/events", wait.key, "text/event-stream", False))
        status, headers = await _headers(reader)
        if status != 200:
            raise RuntimeError(f"stream answered {status}")
        wait.open = True
        wait.headers_in.set()
        buffer = ""
        while True:  # chunked transfer encoding
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                break
            buffer += (await reader.readexactly(size + 2))[:-2].decode()
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
                if fields:
                    wait.events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
        wait.done = True
    finally:
        writer.close()


async def _long_poll(host: str, port: int, wait: Wait) -> None:
    while True:  # as a client does: ask again while the job is not finished
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_request(host, f"/v1/jobs/{wait.job_id}?wait=30", wait.key, "application/json", True))
            await writer.drain()
            wait.open = True  # a long-poll answers only at its end: open once asked
            wait.headers_in.set()
            status, _ = await _headers(reader)
            body = await reader.read()
            if status != 200:
                raise RuntimeError(f"long-poll answered {status}: {body[:200]!r}")
            wait.job = json.loads(body)
        finally:
            writer.close()
        if wait.job and wait.job["status"] == "succeeded":
            wait.done = True
            return


async def _run(wait: Wait, host: str, port: int) -> None:
    try:
        await (_stream if wait.kind == "stream" else _long_poll)(host, port, wait)
    except Exception as error:  # noqa: BLE001 - reported
        wait.error = f"{type(error).__name__}: {error}"
    finally:
        wait.open = False
        wait.headers_in.set()


def _complete(wait: Wait, deltas: int) -> str | None:
    """What is wrong with what the wait received; None if nothing."""
    if wait.error:
        return f"{wait.kind} {wait.job_id}: {wait.error}"
    if wait.kind == "poll":
        return None if wait.done else f"poll {wait.job_id}: ended {wait.job and wait.job['status']}"
    ids, types = [e[0] for e in wait.events], [e[1] for e in wait.events]
    text = "".join(e[2]["text"] for e in wait.events if e[1] == "message.delta")
    if ids != list(range(1, len(ids) + 1)) or not types or types[-1] != "job.succeeded":
        return f"stream {wait.job_id}: ids {ids[:3]}…{ids[-3:]}, last {types[-1:] }"
    if types[:2] != ["job.queued", "job.started"] or text != "".join(f"part {n} " for n in range(deltas)):
        return f"stream {wait.job_id}: {types}, text {text!r}"
    return None


async def _main(api_url: str, commands, replies) -> None:
    url = urlsplit(api_url)
    host, port = url.hostname, url.port
    loop, waits, tasks = asyncio.get_running_loop(), [], []
    while True:
        command = await loop.run_in_executor(None, commands.get)
        if command[0] == "open":
            fresh = [Wait(*spec) for spec in command[1]]
            gate = asyncio.Semaphore(OPEN_AT_ONCE)

            async def opened(wait: Wait) -> None:
                async with gate:
                    tasks.append(asyncio.create_task(_run(wait, host, port)))
                    try:
                        await asyncio.wait_for(wait.headers_in.wait(), OPEN_SECONDS)
                    except TimeoutError:
                        pass
            await asyncio.gather(*(opened(w) for w in fresh))
            waits.extend(fresh)
            replies.put((sum(w.open for w in fresh), [w.error for w in fresh if w.error]))
        elif command[0] == "count":
            replies.put((sum(w.open for w in waits), [w.error for w in waits if w.error][:20]))
        elif command[0] == "collect":
            await asyncio.wait(tasks, timeout=COLLECT_SECONDS)
            wrong = [problem for w in waits if (problem := _complete(w, command[1]))]
            replies.put((len(waits) - len(wrong), wrong[:20]))
        else:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return


def hold(api_url: str, commands: queue.Queue, replies: queue.Queue) -> None:
    asyncio.run(_main(api_url, commands, replies))
