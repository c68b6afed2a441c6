"""Parley's HTTP API as the terminal client needs it. Errors become `ClientError`
with a message for a person, never a traceback."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import httpx2 as httpx

from client.sse import Event, parse_events

FINAL_EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "job.requires_action")
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "requires_action")
WAIT_SECONDS = 30  # the API's long-poll cap


class ClientError(Exception):
    """Something to tell the user; `fatal` ones end the session (bad key, no server)."""

    def __init__(self, message: str, fatal: bool = False, status: int | None = None):
        super().__init__(message)
        self.fatal, self.status = fatal, status


class Parley:
    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, transport=transport,
                                 headers={"Authorization": f"Bearer {key}", "User-Agent": "parley-client/1"},
                                 timeout=httpx.Timeout(WAIT_SECONDS + 30, connect=5))

    def close(self) -> None:
        self.http.close()

    def conversations(self, limit: int = 20) -> list[dict]:
        return self._json("GET", "/v1/conversations", params={"limit": limit})["data"]

    def messages(self, conversation_id: str, limit: int, before: str | None = None) -> dict:
        """A page of the conversation, newest first: `data`, `has_more`, `last_cursor`."""
        params = {"limit": limit, **({"before": before} if before else {})}
        return self._json("GET", f"/v1/conversations/{conversation_id}/messages", params=params)

    def create_conversation(self, name: str | None) -> dict:
        return self._json("POST", "/v1/conversations", json={"name": name} if name else {})

    def cancel(self, job_id: str) -> dict | None:
        """The cancelled job, or None if it had already ended."""
        try:
            return self._json("POST", f"/v1/jobs/{job_id}/cancel")
        except ClientError as error:
            if error.status == 409:
                return None
            raise

    def wait(self, job_id: str) -> dict:
        """The job once it has ended (long-polls as often as needed)."""
        while True:
            job = self._json("GET", f"/v1/jobs/{job_id}", params={"wait": WAIT_SECONDS})
            if job["status"] in FINAL_STATUSES:
                return job

    @contextmanager
    def send(self, conversation_id: str, content: str, tools: list[dict] | None = None) -> Iterator["Reply"]:
        """Post a message (with the client's own tools, if any) and stream its job's events."""
        body = {"content": content, **({"tools": tools} if tools else {})}
        with self._stream("POST", f"/v1/conversations/{conversation_id}/messages", json=body) as reply:
            yield reply

    @contextmanager
    def follow(self, job_id: str) -> Iterator["Reply"]:
        """Stream the events of a job already queued (a tool round's continuation)."""
        with self._stream("GET", f"/v1/jobs/{job_id}/events") as reply:
            reply.job_id = reply.job_id or job_id
            yield reply

    def tool_results(self, job_id: str, results: list[dict]) -> dict:
        """Answer a requires_action job's calls; returns the continuation job."""
        return self._json("POST", f"/v1/jobs/{job_id}/tool_results", json={"results": results})["job"]

    @contextmanager
    def _stream(self, method: str, path: str, **options) -> Iterator["Reply"]:
        with self._guard():
            with self.http.stream(method, path, headers={"Accept": "text/event-stream"}, **options) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _http_error(response)
                yield Reply(response)

    def _json(self, method: str, path: str, **options) -> dict:
        with self._guard():
            response = self.http.request(method, path, **options)
        if response.status_code >= 400:
            raise _http_error(response)
        return response.json()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as error:
            raise ClientError(f"cannot connect to Parley at {self.url} ({_reason(error)}). "
                              "Is it running? `make run` starts it.", fatal=True) from None
        except httpx.TimeoutException:
            raise ClientError(f"Parley at {self.url} did not answer in time.") from None
        except httpx.HTTPError as error:
            raise ClientError(f"the connection to Parley failed: {_reason(error)}") from None


class Reply:
    """A posted message's response: its job id and, if the server streams, its events."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        location = response.headers.get("location", "")
        self.job_id = location.rsplit("/", 1)[-1] if location.startswith("/v1/jobs/") else None
        if not self.streaming:  # a server without streaming answers 202 with the job
            response.read()
            self.job = response.json().get("job", {})
            self.job_id = self.job_id or self.job.get("id")

    def events(self) -> Iterator[Event]:
        if not self.streaming:
            return
        try:
            yield from parse_events(self.response.iter_lines())
        except httpx.HTTPError as error:
            raise ClientError(f"the reply's stream broke: {_reason(error)}") from None


def _http_error(response: httpx.Response) -> ClientError:
    try:
        error = response.json()["error"]
        detail = f"{error['type']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401:
        return ClientError(f"the API key was refused ({detail}). Pass --key or set PARLEY_API_KEY.",
                           fatal=True, status=401)
    return ClientError(f"{response.status_code} {detail}", status=response.status_code)


def _reason(error: Exception) -> str:
    text = str(error)
    if "refused" in text.lower() or "errno 111" in text.lower():
        return "connection refused"
    return text or type(error).__name__
