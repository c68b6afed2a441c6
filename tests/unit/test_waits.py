"""Long-polls sharing one subscription (api/waits.py): they answer when their job ends."""
from __future__ import annotations

import queue
import threading

import pytest
import redis

from api import waits
from api.waits import JobEndWaits
import shared.events
from shared.events import EVENTS_CHANNEL


class PubSub:
    def __init__(self, published: queue.Queue, appends: bool = False):
        self.published, self.appends = published, appends

    def get_message(self, timeout: float):
        try:
            job_id = self.published.get(timeout=timeout)
        except queue.Empty:
            return None
        if self.appends:
            return {"channel": EVENTS_CHANNEL.encode(), "data": job_id.encode()}
        return {"channel": f"parley:job:{job_id}:finished".encode()}

    def close(self) -> None:
        pass


class Events:
    """What JobEndWaits uses of JobEvents. `pubsub_down`: subscribing fails; `down`: everything does."""

    def __init__(self, pubsub_down: bool = False, down: bool = False):
        self.published: queue.Queue = queue.Queue()  # job ends
        self.appended: queue.Queue = queue.Queue()  # appends to a job's events
        self.pubsub_down, self.down = pubsub_down or down, down
        self.append_subscriptions = 0

    def subscribe_all_finished(self) -> PubSub:
        if self.pubsub_down:
            raise redis.ConnectionError("Redis is down")
        return PubSub(self.published)

    def subscribe_appends(self) -> PubSub:
        if self.pubsub_down:
            raise redis.ConnectionError("Redis is down")
        self.append_subscriptions += 1
        return PubSub(self.appended, appends=True)

    def ended(self, job_id: str) -> str | None:
        if self.down:
            raise redis.ConnectionError("Redis is down")
        return None


@pytest.fixture()
def made(monkeypatch):
    """JobEndWaits of a test, closed after it; its subscriptions look at whether to stop
    every 20 ms (the fake pub/sub confirms nothing, so its first wait is that long too)."""
    monkeypatch.setattr(shared.events, "LISTEN_SECONDS", 0.02)
    instances = []
    yield lambda events: instances.append(JobEndWaits(events)) or instances[-1]
    for instance in instances:
        instance.close()


def waiting(waits_: JobEndWaits, job_id: str, timeout: float, is_final) -> threading.Thread:
    thread = threading.Thread(target=waits_.wait, args=(job_id, timeout, is_final), daemon=True)
    thread.start()
    return thread


def test_a_published_end_answers_its_waiters_only(made):
    events = Events()
    waits_ = made(events)
    first, second = waiting(waits_, "j1", 60, lambda: False), waiting(waits_, "j1", 60, lambda: False)
    other = waiting(waits_, "j2", 60, lambda: False)
    while len(waits_._waiting.get("j1", ())) < 2 or "j2" not in waits_._waiting:
        threading.Event().wait(0.01)
    events.published.put("j1")
    first.join(10), second.join(10)
    assert not first.is_alive() and not second.is_alive() and other.is_alive()
    events.published.put("j2")
    other.join(10)
    assert not other.is_alive() and waits_._waiting == {}


def test_a_job_already_final_answers_at_once(made):
    looked = []
    made(Events()).wait("j1", 60, lambda: looked.append(1) or True)
    assert looked == [1]


def test_nothing_happening_ends_at_the_timeout(made):
    made(Events()).wait("j1", 0.1, lambda: False)


def test_without_the_subscription_the_row_is_looked_at(made, monkeypatch):
    monkeypatch.setattr(waits, "DOWN_RECHECK_SECONDS", 0.02)
    monkeypatch.setattr(waits, "SUBSCRIBE_WAIT_SECONDS", 0.02)
    ended = threading.Event()
    thread = waiting(made(Events(pubsub_down=True)), "j1", 60, ended.is_set)
    ended.set()  # committed, never published
    thread.join(10)
    assert not thread.is_alive()



def test_with_redis_down_a_long_poll_fails_as_unavailable(made, monkeypatch):
    monkeypatch.setattr(waits, "SUBSCRIBE_WAIT_SECONDS", 0.02)
    with pytest.raises(redis.ConnectionError):
        made(Events(down=True)).wait("j1", 60, lambda: False)


def test_an_append_wakes_the_streams_of_its_job_only(made):
    events = Events()
    waits_ = made(events)
    with waits_.watch("j1") as mine, waits_.watch("j2") as other:
        mine.woken.clear(), other.woken.clear()  # the wake-all after subscribing
        events.appended.put("j1")
        assert mine.woken.wait(10) and not mine.look_at_row
        assert not other.woken.is_set()
    assert waits_._streams == {}


def test_appends_are_taken_only_while_streams_are_open(made, monkeypatch):
    """A process serving long-polls alone does not receive every job's appends; the
    subscription starts with the first stream and ends after the last, once idle."""
    monkeypatch.setattr(waits, "IDLE_APPENDS_SECONDS", 0.0)
    events = Events()
    waits_ = made(events)
    waiting(waits_, "j1", 0.05, lambda: False).join(10)
    assert events.append_subscriptions == 0 and not waits_.live
    with waits_.watch("j2") as watch:
        assert watch.woken.wait(10) and waits_.live  # woken once subscribed: what came before is read
        first = waits_._appends
    first._thread.join(10)  # idle at once, so it ends at its next look
    assert not first._thread.is_alive() and not waits_.live and waits_._appends is None
    with waits_.watch("j3") as watch:
        assert watch.woken.wait(10) and waits_.live
    assert events.append_subscriptions == 2


def test_the_open_streams_of_a_user_are_capped(made):
    waits_ = made(Events())
    assert waits_.hold("alice", 2) and waits_.hold("alice", 2)
    assert not waits_.hold("alice", 2) and waits_.hold("bob", 2)
    waits_.release("alice")
    assert waits_.hold("alice", 2)
