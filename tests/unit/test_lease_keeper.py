"""The lease keeper (worker/lease.py) against the fake records: every held job's lease is
renewed in one call a beat, a job no longer held by its claim has its model call
cancelled, and the keeper's thread ends once nothing is held."""
from __future__ import annotations

import threading
import uuid

from shared.cancel import CancelToken
from tests.unit.fakes import FakeRecords
from worker.lease import LeaseKeeper


class CountingRecords(FakeRecords):
    lease_seconds = 0.03  # a beat every 10 ms

    def __init__(self):
        super().__init__()
        self.beats: list[int] = []
        self.beat = threading.Event()

    def renew_all(self, claims):
        kept = super().renew_all(claims)
        self.beats.append(len(claims))
        self.beat.set()
        return kept


def held_claims(records: CountingRecords, count: int):
    """`count` claimed jobs, each the message of its own conversation."""
    jobs = [records.submit(records.conversation_for(uuid.uuid4()), f"message {n}") for n in range(count)]
    return [records.claim(uuid.UUID(job_id), "unit") for job_id in jobs]


def test_every_held_lease_is_renewed_in_one_call_and_a_taken_over_job_is_cancelled():
    records = CountingRecords()
    keeper = LeaseKeeper(records)
    first, second = held_claims(records, 2)
    first_token, second_token = CancelToken(), CancelToken()
    with keeper.holding(first, first_token), keeper.holding(second, second_token):
        assert records.beat.wait(5)
        assert records.beats[0] == 2  # both leases in one statement
        records.take_over(str(second.job_id))  # another worker's claim after this one's ran out
        assert second_token.wait(5)
        assert not first_token.cancelled


def test_the_keeper_thread_ends_when_nothing_is_held_and_a_new_hold_starts_another():
    records = CountingRecords()
    keeper = LeaseKeeper(records)
    [claim] = held_claims(records, 1)
    with keeper.holding(claim, CancelToken()):
        thread = keeper._thread
        assert thread is not None and thread.is_alive()
    thread.join(5)
    assert not thread.is_alive() and keeper._thread is None
    with keeper.holding(claim, CancelToken()):
        assert keeper._thread is not None and keeper._thread is not thread
