"""Each job's events, kept in a Redis stream so a reconnecting client resumes exactly.

Event `n` of a job has stream id `0-n`: ids increase by one, a reader resumes
after any id, and Redis assigns them atomically whoever writes. A job gets
exactly one final event (`job.succeeded`, `job.failed` or `job.cancelled`);
nothing is added after it, which is also how a worker learns that its job was
cancelled while the model was still talking.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import orjson
import redis

from shared.deltas import DeltaBatcher
from shared.models import FINAL_STATUSES

log = logging.getLogger(__name__)

FINAL_EVENTS = tuple(f"job.{status}" for status in FINAL_STATUSES)
# While a job is live its events are kept this long at most; a finished job's
# for `events_ttl`.
LIVE_TTL_SECONDS = 24 * 3600
LISTEN_SECONDS = 1.0  # a subscription's longest wait for a message before it looks at whether to stop

# One channel for every job's new events: its messages are job ids, one per append
# (a batch of deltas is one append). An API process subscribes while it holds open
# streams, and wakes the streams of that job (api/waits.py); nobody holds a connection
# per stream.
EVENTS_CHANNEL = "parley:events"

# KEYS: stream, final marker, finished channel, events channel. ARGV: final?, ttl, job
# id, then each event's type and data (a batch of deltas, and the event that follows
# them, in one call). Returns the last new event's number, or false if the job already
# had its final event.
_APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local id
for i = 4, #ARGV, 2 do
  id = redis.call('XADD', KEYS[1], '0-*', 'type', ARGV[i], 'data', ARGV[i + 1])
end
if ARGV[1] == '1' then
  local final = ARGV[#ARGV - 1]
  redis.call('SET', KEYS[2], final, 'EX', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('PUBLISH', KEYS[3], final)
else
  redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
end
redis.call('PUBLISH', KEYS[4], ARGV[3])
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
        return f"id: {self.id}\nevent: {self.type}\ndata: {orjson.dumps(self.data).decode()}\n\n"


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
    """Append and read a job's events (long-polls await ends in api/waits.py)."""

    READ_COUNT = 500  # events a read returns at most

    def __init__(self, client: redis.Redis, events_ttl: int):
        self.client, self.events_ttl = client, events_ttl
        self._script = client.register_script(_APPEND)
        self._deltas = DeltaBatcher(lambda job, datas: self._append(job, [("message.delta", d) for d in datas]))

    def add(self, job_id: object, type_: str, data: dict | None = None) -> int | None:
        """Append an event; None if the job already ended (nothing is added after the end).

        A `message.delta` may be held for a moment and appended with the job's next
        ones (see shared/deltas.py; it returns 0 then); any other event of the job
        appends the held ones first.
        """
        job = str(job_id)
        if type_ == "message.delta":
            return self._deltas.add(job, data or {})
        # The held deltas go first, in the same call (one round trip at a turn's end, not two).
        return self._deltas.flush(job, lambda held: self._append(job, [*(("message.delta", d) for d in held),
                                                                          (type_, data or {})]))

    def _append(self, job: str, events: list[tuple[str, dict]]) -> int | None:
        final = events[-1][0] in FINAL_EVENTS
        args: list = ["1" if final else "0", self.events_ttl if final else LIVE_TTL_SECONDS, job]
        for type_, data in events:
            args += (type_, orjson.dumps(data))
        return self._script(keys=[_stream_key(job), _final_key(job), _finished_channel(job), EVENTS_CHANNEL],
                            args=args)

    def ended(self, job_id: object) -> str | None:
        """The final event's type, once the job has one."""
        value = self.client.get(_final_key(job_id))
        return value.decode() if value else None

    def final_data(self, job_id: object) -> dict | None:
        """The final event's data (the job as it ended: shared/jobs.announce_end), once it has one."""
        entries = self.client.xrevrange(_stream_key(job_id), count=1)  # nothing is added after the end
        if not entries or entries[0][1][b"type"].decode() not in FINAL_EVENTS:
            return None
        return orjson.loads(entries[0][1][b"data"])

    def exists(self, job_id: object) -> bool:
        return bool(self.client.exists(_stream_key(job_id)))

    def read(self, job_id: object, after: int, block_ms: int | None = None, count: int = READ_COUNT) -> list[Event]:
        """Events numbered above `after`; waits up to `block_ms` for the first if there are none."""
        if block_ms is None:
            entries = self.client.xrange(_stream_key(job_id), min=f"0-{after + 1}", count=count)
        else:
            reply = self.client.xread({_stream_key(job_id): f"0-{after}"}, count=count, block=block_ms)
            entries = reply[0][1] if reply else []
        return [Event(int(raw_id.split(b"-")[1]), fields[b"type"].decode(), orjson.loads(fields[b"data"]))
                for raw_id, fields in entries]

    def subscribe_all_finished(self):
        """A pub/sub subscribed to every job's end; the caller closes it."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(_finished_channel("*"))
        return pubsub

    def subscribe_appends(self):
        """A pub/sub subscribed to every append to any job's events (their job ids); the caller closes it."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(EVENTS_CHANNEL)
        return pubsub


class Subscription:
    """A thread holding one pub/sub from `subscribe()`, calling `on_message(message)`
    for each message, and subscribing again when Redis drops. `subscribed` is set while
    the subscription holds; `tried` once the first attempt is over, whichever way it
    went. `on_subscribed()` runs after each (re)subscribe: what was published
    meanwhile was missed. `done()`, asked at least every LISTEN_SECONDS, ends it."""

    def __init__(self, subscribe: Callable[[], "redis.client.PubSub"], on_message: Callable[[dict], None],
                 name: str, on_subscribed: Callable[[], None] | None = None,
                 done: Callable[[], bool] | None = None):
        self.subscribe, self.on_message, self.on_subscribed = subscribe, on_message, on_subscribed
        self.done = done or (lambda: False)
        self.subscribed, self.tried, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Subscription":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, within LISTEN_SECONDS."""
        self._stop.set()

    def _over(self) -> bool:
        if not self._stop.is_set() and self.done():
            self._stop.set()
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._over():
            pubsub = None
            try:
                pubsub = self.subscribe()
                pubsub.get_message(timeout=LISTEN_SECONDS)  # the confirmation: from here on nothing is missed
                self.subscribed.set()
                if self.on_subscribed:  # before `tried`: a stream that starts after this needs no wake
                    self.on_subscribed()
                self.tried.set()
                while not self._over():
                    message = pubsub.get_message(timeout=LISTEN_SECONDS)
                    if message is not None:
                        self.on_message(message)
            except Exception as error:  # Redis is down: users of the subscription check rows meanwhile
                if self.subscribed.is_set():
                    log.warning("%s: subscription lost, reconnecting: %s", self._thread.name, error)
                self.tried.set()
                self._stop.wait(1.0)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    pubsub.close()


def end_subscription(events: JobEvents, on_end: Callable[[str], None], name: str) -> Subscription:
    """Every job's end: `on_end(job_id)`."""
    return Subscription(events.subscribe_all_finished, lambda message: on_end(job_id_of(message["channel"])), name)


def append_subscription(events: JobEvents, on_events: Callable[[str | None], None], name: str,
                        done: Callable[[], bool]) -> Subscription:
    """Every append to any job's events: `on_events(job_id)`, and `on_events(None)` after
    each (re)subscribe; ends when `done()` says so."""
    return Subscription(events.subscribe_appends, lambda message: on_events(message["data"].decode()), name,
                        on_subscribed=lambda: on_events(None), done=done)
