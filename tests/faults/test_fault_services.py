"""PostgreSQL, Redis or object storage going away under load: the API answers 503
with the error envelope meanwhile and recovers by itself; every accepted job ends,
exactly once, in submit order."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select

from shared.models import Conversation, Job, Turn
from tests.faults.stack import assert_consistent, text_of, wait_until
from tests.integration.helpers import new_conversation
from worker.window import rebuild_window


def assert_unavailable(response) -> None:
    assert response.status_code == 503, (response.status_code, response.data[:300])
    assert response.get_json()["error"]["type"] == "service_unavailable"
    assert response.headers.get("Retry-After")


class Load:
    """Messages submitted round-robin to some conversations from a background thread,
    as fast as the API takes them; remembers which were accepted (202)."""

    def __init__(self, stack, user: dict, conversations: list[str]):
        self.stack, self.user, self.conversations = stack, user, conversations
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        client, n = self.stack.app.test_client(), 0
        while not self._stop.is_set():
            conversation_id = self.conversations[n % len(self.conversations)]
            response = client.post(f"/v1/conversations/{conversation_id}/messages",
                                   json={"content": f"load {n}"}, headers=self.user)
            self.statuses.append(response.status_code)
            if response.status_code == 202:
                self.accepted.append(response.get_json()["job"]["id"])
            n += 1
            self._stop.wait(0.05)

    def wait_accepted(self, count: int, timeout: float = 30) -> None:
        start = len(self.accepted)
        wait_until(lambda: len(self.accepted) >= start + count, timeout, what=f"{count} more accepted messages")


def submit_round(api, user, conversations: list[str], label: str) -> list[str]:
    ids = []
    for conversation_id in conversations:
        response = api.post(f"/v1/conversations/{conversation_id}/messages",
                            json={"content": f"{label} " + "words " * 300}, headers=user)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["job"]["id"])
    return ids


def jobs_of(stack, conversations: list[str]) -> list[Job]:
    with stack.services.sessions() as session:
        return session.scalars(select(Job).where(Job.conversation_id.in_([uuid.UUID(c) for c in conversations]))
                               .order_by(Job.position)).all()


def wait_all_final(stack, conversations: list[str], timeout: float = 90) -> list[Job]:
    def settled():
        jobs = jobs_of(stack, conversations)
        return jobs if all(job.status in ("succeeded", "failed", "cancelled") for job in jobs) else None
    return wait_until(settled, timeout, interval=0.25, what="every job to end")


def assert_exactly_once_in_order(stack, conversations: list[str], accepted: list[str]) -> list[Job]:
    """Every job ended; accepted ones succeeded; each conversation's turns are its
    succeeded jobs, once each, in submit order."""
    jobs = wait_all_final(stack, conversations)
    by_id = {str(job.id): job for job in jobs}
    assert set(accepted) <= set(by_id), "an accepted job vanished"
    failed = {job_id: by_id[job_id].error for job_id in accepted if by_id[job_id].status != "succeeded"}
    assert not failed, failed
    with stack.services.sessions() as session:
        for conversation_id in conversations:
            turns = session.scalars(select(Turn.job_id).where(Turn.conversation_id == uuid.UUID(conversation_id))
                                    .order_by(Turn.seq)).all()
            expected = [job.id for job in jobs if str(job.conversation_id) == conversation_id
                        and job.status == "succeeded"]
            assert turns == expected
    return jobs


def started_calls(stack, count: int) -> None:
    wait_until(lambda: len(stack.model_requests()) >= count, 30, what=f"{count} model calls")


def test_redis_killed_with_jobs_queued_and_running(fault_stack, api, user):
    fault_stack.use_workers(3)
    conversations, accepted = [new_conversation(api, user) for _ in range(4)], []
    for label in ("one", "two", "three"):  # long messages: the windows are full, and cached
        accepted += submit_round(api, user, conversations, label)
        wait_all_final(fault_stack, conversations)
    fault_stack.model_control(stream_delay_ms=1500)
    before = len(fault_stack.model_requests())
    for label in ("four", "five", "six"):
        accepted += submit_round(api, user, conversations, label)
    started_calls(fault_stack, before + 2)

    fault_stack.valkey.kill()
    # Submitting still works: the job is in PostgreSQL, the sweeper sends it later.
    response = api.post(f"/v1/conversations/{conversations[0]}/messages", json={"content": "while Redis is down"},
                        headers=user)
    assert response.status_code == 202
    accepted.append(response.get_json()["job"]["id"])
    assert_unavailable(api.get(f"/v1/jobs/{accepted[-1]}?wait=1", headers=user))  # long-polls need Redis
    assert api.get("/readyz").get_json()["checks"]["redis"].startswith("unavailable")

    fault_stack.valkey.start()  # empty: the queue, the events and the cached windows are gone
    fault_stack.model_control(stream_delay_ms=0)
    assert_exactly_once_in_order(fault_stack, conversations, accepted)
    assert api.get(f"/v1/jobs/{accepted[-1]}?wait=1", headers=user).status_code == 200

    # One more turn each, now that Redis is back: every window the workers cache is
    # the one the log rebuilds.
    accepted += submit_round(api, user, conversations, "seven")
    assert_exactly_once_in_order(fault_stack, conversations, accepted)
    with fault_stack.services.sessions() as session:
        for conversation_id in conversations:
            conversation = session.get(Conversation, uuid.UUID(conversation_id))
            assert conversation.turn_count == (8 if conversation_id == conversations[0] else 7)
            # The window is cached just after the turn commits.
            cached = wait_until(lambda: _cached_window(fault_stack, conversation), 10, what="the cached window")
            rebuilt = rebuild_window(fault_stack.services, conversation)
            assert cached == rebuilt
            assert len(rebuilt.messages) < 16, "the window should be a strict suffix here"
    assert_consistent(fault_stack)


def _cached_window(stack, conversation):
    cached = stack.services.windows.get(conversation.conversation_id)
    return cached if cached is not None and cached.turn_seq == conversation.turn_count else None


def test_object_storage_down_for_seconds_mid_load(fault_stack, api, user):
    fault_stack.use_workers(3)
    conversations = [new_conversation(api, user) for _ in range(4)]
    accepted = submit_round(api, user, conversations, "before")
    wait_all_final(fault_stack, conversations)
    fault_stack.model_control(stream_delay_ms=300)
    before = len(fault_stack.model_requests())
    for label in ("one", "two", "three"):
        accepted += submit_round(api, user, conversations, label)
    started_calls(fault_stack, before + 2)

    fault_stack.s3.stop()
    # Reading history needs no storage (turn rows keep their entries); writing turns does.
    read = api.get(f"/v1/conversations/{conversations[0]}", headers=user)
    assert read.status_code == 200 and read.get_json()["messages"][0]["content"].startswith("before")
    assert api.get("/readyz").get_json()["checks"]["storage"].startswith("unavailable")
    # Hold the outage until the worker of every conversation has hit it and handed its job back.
    wait_until(lambda: sum(job.attempts > 1 for job in jobs_of(fault_stack, conversations)) >= len(conversations),
               30, what="workers to hand jobs back")
    fault_stack.s3.start()
    fault_stack.model_control(stream_delay_ms=0)

    assert_exactly_once_in_order(fault_stack, conversations, accepted)
    body = api.get(f"/v1/conversations/{conversations[0]}", headers=user).get_json()
    assert [m["content"].split()[0] for m in body["messages"][0::2]] == ["before", "one", "two", "three"]
    assert_consistent(fault_stack)


def test_postgres_restarted_under_load(fault_stack, api, user):
    fault_stack.use_workers(3)
    conversations = [new_conversation(api, user) for _ in range(4)]
    fault_stack.model_control(stream_delay_ms=300)
    with Load(fault_stack, user, conversations) as load:
        load.wait_accepted(8)
        fault_stack.postgres.stop()
        assert_unavailable(api.get("/v1/conversations", headers=user))
        assert_unavailable(api.post(f"/v1/conversations/{conversations[0]}/messages", json={"content": "x"},
                                    headers=user))
        assert_unavailable(api.get(f"/v1/jobs/{load.accepted[0]}", headers=user))
        assert api.get("/readyz").status_code == 503
        wait_until(lambda: 503 in load.statuses[-3:], 10, what="the load to see the outage")
        fault_stack.postgres.start()
        # The same processes serve again, without a restart.
        wait_until(lambda: api.get("/v1/conversations", headers=user).status_code == 200, 15,
                   what="the API to serve again")
        load.wait_accepted(8)
    assert set(load.statuses) <= {202, 503}, set(load.statuses)
    fault_stack.model_control(stream_delay_ms=0)
    assert_exactly_once_in_order(fault_stack, conversations, load.accepted)
    assert_consistent(fault_stack)


def test_fifty_concurrent_submits_to_one_conversation(fault_stack, api, user):
    from concurrent.futures import ThreadPoolExecutor

    fault_stack.use_workers(3)
    system = f"order test {uuid.uuid4()}"
    conversation_id = new_conversation(api, user, system=system)
    gate = threading.Barrier(50)

    def send(n: int) -> str:
        client = fault_stack.app.test_client()
        gate.wait()
        response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": f"message {n}"},
                               headers=user)
        assert response.status_code == 202, response.get_json()
        return response.get_json()["job"]["id"]

    with ThreadPoolExecutor(50) as pool:
        accepted = list(pool.map(send, range(50)))
    jobs = assert_exactly_once_in_order(fault_stack, [conversation_id], accepted)
    assert len(jobs) == 50

    calls = [r for r in fault_stack.model_requests() if _system_text(r.get("system")) == system]
    assert len(calls) == 50
    history: list[str] = []
    for job, call in zip(jobs, calls):  # turn k's call saw turns 1..k-1 in full, then message k
        history.append(job.request["content"])
        assert [_text(m["content"]) for m in call["messages"]] == history
        history.append(job.reply["content"])
    with fault_stack.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Turn)
                              .where(Turn.conversation_id == uuid.UUID(conversation_id))) == 50
    assert_consistent(fault_stack)


def _text(content) -> str:
    return text_of(content)


def _system_text(system) -> str | None:
    return None if system is None else _text(system)
