"""Each job's events, kept in a Redis stream so a reconnecting client resumes exactly.

Event `n` of a job has stream id `0-n`: ids increase by one, a reader resumes
after any id, and Redis assigns them atomically whoever writes. A job gets
exactly one final event (`job.succeeded`, `job.failed` or `job.cancelled`);
nothing is added after it, which is also how a worker learns that its job was
cancelled while the model was still talking.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

FINAL_EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
# While a job is live its events are kept this long at most; a finished job's
# for `events_ttl`.
LIVE_TTL_SECONDS = 24 * 3600

# KEYS: stream, final marker, finished channel. ARGV: type, data, final?, ttl.
# Returns the new event number, or false if the job already had its final event.
_APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local id = redis.call('XADD', KEYS[1], '0-*', 'type', ARGV[1], 'data', ARGV[2])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('PUBLISH', KEYS[3], ARGV[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[4], 'NX')
end
return tonumber(string.sub(id, 3))
"""


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict

    @property
    def final(self) -> bool:
        return self.type in FINAL_EVENTS

    def to_sse(self) -> str:
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


def _stream_key(job_id: object) -> str:
    return f"parley:job:{job_id}:events"


def _final_key(job_id: object) -> str:
    return f"parley:job:{job_id}:final"


def _finished_channel(job_id: object) -> str:
    return f"parley:job:{job_id}:finished"


def job_id_of(channel: bytes) -> str:
    """The job id in a finished channel's name."""
    return channel.decode().split(":")[2]


class JobEvents:
    """Append, read and await a job's events."""

    def __init__(self, client: redis.Redis, events_ttl: int):
        self.client, self.events_ttl = client, events_ttl
        self._append = client.register_script(_APPEND)

    def add(self, job_id: object, type_: str, data: dict | None = None) -> int | None:
        """Append an event; None if the job already ended (nothing is added after the end)."""
        final = type_ in FINAL_EVENTS
        return self._append(
            keys=[_stream_key(job_id), _final_key(job_id), _finished_channel(job_id)],
            args=[type_, json.dumps(data or {}, separators=(",", ":")), "1" if final else "0",
                  self.events_ttl if final else LIVE_TTL_SECONDS])

    def ended(self, job_id: object) -> str | None:
        """The final event's type, once the job has one."""
        value = self.client.get(_final_key(job_id))
        return value.decode() if value else None

    def exists(self, job_id: object) -> bool:
        return bool(self.client.exists(_stream_key(job_id)))

    def read(self, job_id: object, after: int, block_ms: int | None = None, count: int = 500) -> list[Event]:
        """Events numbered above `after`; waits up to `block_ms` for the first if there are none."""
        if block_ms is None:
            entries = self.client.xrange(_stream_key(job_id), min=f"0-{after + 1}", count=count)
        else:
            reply = self.client.xread({_stream_key(job_id): f"0-{after}"}, count=count, block=block_ms)
            entries = reply[0][1] if reply else []
        return [Event(int(raw_id.split(b"-")[1]), fields[b"type"].decode(), json.loads(fields[b"data"]))
                for raw_id, fields in entries]

    def wait_finished(self, job_id: object, timeout: float, is_final) -> None:
        """Return when `is_final()` holds, the job's final event is added, or `timeout` passes.

        Subscribes before the first check, so an end between the check and the
        wait is not missed.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(_finished_channel(job_id))
            if is_final():
                return
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                if pubsub.get_message(timeout=min(remaining, 5.0)) is not None:
                    return
        finally:
            pubsub.close()

    def subscribe_all_finished(self):
        """A pub/sub subscribed to every job's end; the caller closes it."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(_finished_channel("*"))
        return pubsub
