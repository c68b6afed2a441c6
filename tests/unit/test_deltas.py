"""message.delta batching (shared/deltas.py): readers get every piece, in order, soon."""
from __future__ import annotations

import threading

from shared.deltas import DeltaBatcher


class Stream:
    """A job's event stream as Redis would hold it: (job, text) in append order, and the calls made."""

    def __init__(self, ended: bool = False):
        self.events: list[tuple[str, str]] = []
        self.calls = 0
        self.ended = ended
        self.changed = threading.Condition()

    def append(self, job: str, datas: list[dict]) -> int | None:
        with self.changed:
            self.calls += 1
            if self.ended:
                return None
            self.events.extend((job, data["text"]) for data in datas)
            self.changed.notify_all()
            return len(self.events)

    def texts(self, job: str = "job") -> list[str]:
        return [text for owner, text in self.events if owner == job]

    def then(self, job: str, text: str):
        """The job's next other event, appended with the deltas held before it."""
        return lambda held: self.append(job, [*held, {"text": text}])

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout=10), self.events


def test_the_first_piece_is_appended_at_once_and_the_rest_together():
    stream = Stream()
    batcher = DeltaBatcher(stream.append, interval=60)  # nothing is due during the test
    assert batcher.add("job", {"text": "Once"}) == 1
    assert batcher.add("job", {"text": " upon"}) == 0 and batcher.add("job", {"text": " a time"}) == 0
    assert stream.texts() == ["Once"]
    batcher.flush("job", stream.then("job", "[end]"))  # the job's next other event
    assert stream.texts() == ["Once", " upon", " a time", "[end]"] and stream.calls == 2  # held and next: one call


def test_held_pieces_arrive_without_another_event():
    stream = Stream()
    batcher = DeltaBatcher(stream.append, interval=0.02)
    pieces = [f"{n} " for n in range(30)]
    for piece in pieces:
        batcher.add("job", {"text": piece})
    stream.wait_for(len(pieces))
    assert stream.texts() == pieces


def test_jobs_are_held_apart():
    stream = Stream()
    batcher = DeltaBatcher(stream.append, interval=60)
    for n in range(3):
        batcher.add("a", {"text": f"a{n}"})
        batcher.add("b", {"text": f"b{n}"})
    batcher.flush("b", stream.then("b", "b-end"))
    assert stream.texts("a") == ["a0"] and stream.texts("b") == ["b0", "b1", "b2", "b-end"]
    batcher.flush("a", stream.then("a", "a-end"))
    assert stream.texts("a") == ["a0", "a1", "a2", "a-end"]


def test_after_a_flush_the_next_piece_goes_at_once():
    stream = Stream()
    batcher = DeltaBatcher(stream.append, interval=60)
    batcher.add("job", {"text": "Hel"})
    batcher.flush("job", stream.then("job", "[reset]"))  # e.g. a message.reset between two attempts
    assert batcher.add("job", {"text": "Hello"}) == 3 and stream.texts() == ["Hel", "[reset]", "Hello"]


def test_an_ended_job_says_so():
    batcher = DeltaBatcher(Stream(ended=True).append, interval=60)
    assert batcher.add("job", {"text": "late"}) is None
