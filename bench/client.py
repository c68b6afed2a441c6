"""The load driver's side of the API: httpx2 for sequential turns, aiohttp for many at once."""
from __future__ import annotations

import json
import time
from typing import Iterator

import aiohttp
import httpx2

WAIT = 30


class TurnFailed(RuntimeError):
    pass


def _job_of(response: httpx2.Response) -> dict:
    return _job(response.request.method, response.request.url.path, response.status_code, response.content)


def _job(method: str, path: str, status: int, body: bytes) -> dict:
    """The job a submit or a read answered with; TurnFailed for any other answer."""
    if status not in (200, 202):
        raise TurnFailed(f"{method} {path}: {status} {body[:300].decode(errors='replace').strip()}")
    found = json.loads(body)
    return found.get("job", found)


def _checked(job: dict) -> dict:
    if job["status"] != "succeeded":
        raise TurnFailed(f"job {job['id']} ended {job['status']}: {job.get('error')}")
    return job


class Api:
    """One keep-alive connection, one request at a time."""

    def __init__(self, url: str, key: str):
        self.http = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                  timeout=httpx2.Timeout(WAIT + 30))

    def new_conversation(self, name: str = "bench") -> str:
        response = self.http.post("/v1/conversations", json={"name": name})
        response.raise_for_status()
        return response.json()["id"]

    def submit(self, conversation_id: str, content: str) -> dict:
        return _job_of(self.http.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content}))

    def wait(self, job_id: str) -> dict:
        return _job_of(self.http.get(f"/v1/jobs/{job_id}", params={"wait": WAIT}))

    def turn(self, conversation_id: str, content: str) -> tuple[dict, float]:
        """Submit, long-poll to the end; the seconds from sending the submit to having the reply."""
        started = time.perf_counter()
        job = self.wait(self.submit(conversation_id, content)["id"])
        return _checked(job), time.perf_counter() - started

    def stream_turn(self, conversation_id: str, content: str) -> Iterator[tuple[float, httpx2.ServerSentEvent]]:
        """Submit with `Accept: text/event-stream`; yields (perf_counter, event) as each arrives."""
        with self.http.stream("POST", f"/v1/conversations/{conversation_id}/messages", json={"content": content},
                              headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                response.read()
                raise TurnFailed(f"stream submit: {response.status_code} {response.text[:300]}")
            for event in httpx2.EventSource(response):
                yield time.perf_counter(), event

    def close(self) -> None:
        self.http.close()


class AsyncApi:
    """Many requests at once from one event loop, through aiohttp: the driver shares the
    machine's cores with the stack, and aiohttp's C parser costs it ~0.9 ms of CPU a turn
    (a submit and a long-poll) where httpx2's took 2-3, time the stack then had for itself."""

    def __init__(self, url: str, key: str, connections: int = 1000):
        self.http = aiohttp.ClientSession(
            base_url=url, headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=WAIT + 60), connector=aiohttp.TCPConnector(limit=connections))

    async def _request(self, method: str, path: str, **kwargs) -> dict:
        async with self.http.request(method, path, **kwargs) as response:
            return _job(method, path, response.status, await response.read())

    async def submit(self, conversation_id: str, content: str) -> dict:
        return await self._request("POST", f"/v1/conversations/{conversation_id}/messages",
                                   json={"content": content})

    async def wait(self, job_id: str) -> dict:
        return await self._request("GET", f"/v1/jobs/{job_id}", params={"wait": str(WAIT)})

    async def turn(self, conversation_id: str, content: str) -> tuple[dict, float]:
        started = time.perf_counter()
        job = await self.wait((await self.submit(conversation_id, content))["id"])
        return _checked(job), time.perf_counter() - started

    async def hold_events(self, job_id: str, on_open) -> None:
        """Read the job's event stream until cancelled (or it ends); `on_open()` at its first event."""
        async with self.http.get(f"/v1/jobs/{job_id}/events",
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as response:
            if response.status != 200:
                raise TurnFailed(f"GET /v1/jobs/{job_id}/events: {response.status}")
            opened = False
            async for line in response.content:
                if not opened and line.startswith((b"event:", b"data:")):
                    opened = True
                    on_open()

    async def close(self) -> None:
        await self.http.close()
