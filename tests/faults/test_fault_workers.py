"""Processes that die or are told to stop: no turn is lost or doubled, and open
requests are answered."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from devstack.ports import free_port
from shared.config import ROOT
from shared.models import Job, Turn
from tests.faults.stack import assert_consistent, text_of, wait_until
from tests.integration.helpers import new_conversation, submit, wait_job


def requests_for(stack, content: str) -> list[dict]:
    """The model calls whose newest message is `content`."""
    return [r for r in stack.model_requests() if text_of(r["messages"][-1]["content"]) == content]


def job_row(stack, job_id: str) -> Job:
    with stack.services.sessions() as session:
        return session.get(Job, uuid.UUID(job_id))


def turn_jobs(stack, conversation_id: str) -> list[str]:
    with stack.services.sessions() as session:
        return [str(j) for j in session.scalars(select(Turn.job_id).where(
            Turn.conversation_id == uuid.UUID(conversation_id)).order_by(Turn.seq))]


def test_a_worker_killed_while_the_model_answers_is_replaced_and_the_job_completes_once(
        fault_stack, api, user):
    fault_stack.stop_workers()  # the job must go to the worker about to die
    [doomed] = fault_stack.start_workers(1)
    fault_stack.model_control(delay_ms=60_000)  # the model "thinks" until the worker is gone
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "answer me after the crash")["id"]
    wait_until(lambda: requests_for(fault_stack, "answer me after the crash"), 20, what="the model call")
    assert job_row(fault_stack, job_id).status == "running"

    doomed.kill()  # SIGKILL: no warm shutdown, no release, the message is never acked
    fault_stack.model_control(delay_ms=0)
    [successor] = fault_stack.start_workers(1)

    job = wait_job(api, user, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert job_row(fault_stack, job_id).worker == successor.hostname
    assert turn_jobs(fault_stack, conversation_id) == [job_id]
    assert len(requests_for(fault_stack, "answer me after the crash")) == 2  # the dead call, and the one that counted
    messages = api.get(f"/v1/conversations/{conversation_id}", headers=user).get_json()["messages"]
    assert [m["content"] for m in messages] == ["answer me after the crash", job["reply"]["content"]]
    assert_consistent(fault_stack)


def test_sigterm_lets_in_flight_turns_finish_and_hands_back_the_rest(fault_stack, api, user):
    fault_stack.stop_workers()
    [stopping] = fault_stack.start_workers(1, concurrency=1)
    fault_stack.model_control(stream_delay_ms=3000)  # each reply streams for 3 s
    running_in = new_conversation(api, user)
    waiting_in = new_conversation(api, user)
    running = submit(api, user, running_in, "finish me")["id"]
    wait_until(lambda: requests_for(fault_stack, "finish me"), 20, what="the model call")
    waiting = submit(api, user, waiting_in, "hand me back")["id"]

    assert stopping.terminate() == 0  # returns once the in-flight turn is done
    finished = job_row(fault_stack, running)
    assert finished.status == "succeeded" and finished.attempts == 1 and finished.worker == stopping.hostname
    assert job_row(fault_stack, waiting).status == "queued"

    fault_stack.model_control(stream_delay_ms=0)
    fault_stack.start_workers(1)
    job = wait_job(api, user, waiting)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert turn_jobs(fault_stack, running_in) == [running] and turn_jobs(fault_stack, waiting_in) == [waiting]
    assert len(requests_for(fault_stack, "finish me")) == 1
    assert_consistent(fault_stack)


class Gunicorn:
    """The API as deployed (api/gunicorn_conf.py), one process, in a child process."""

    def __init__(self, env: dict, tmp_path):
        self.url = f"http://127.0.0.1:{free_port()}"
        metrics = tmp_path / "metrics"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b", self.url[7:], "api.wsgi:app"],
            cwd=ROOT, env={**env, "API_PROCESSES": "1", "API_THREADS": "4", "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def serving(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine's slow start
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def test_sigterm_on_the_api_drains_open_requests(fault_stack, user, tmp_path):
    fault_stack.use_workers(1)
    fault_stack.model_control(stream_delay_ms=2000)
    api = Gunicorn(fault_stack.env, tmp_path)
    try:
        wait_until(api.serving, 60, interval=0.2, what="gunicorn to serve")
        conversation = requests.post(f"{api.url}/v1/conversations", json={}, headers=user, timeout=10).json()["id"]
        job = requests.post(f"{api.url}/v1/conversations/{conversation}/messages", json={"content": "drain me"},
                            headers=user, timeout=10).json()["job"]
        stream = requests.get(f"{api.url}/v1/jobs/{job['id']}/events", headers=user, stream=True, timeout=30)
        lines = stream.iter_lines(decode_unicode=True)
        assert next(line for line in lines if line.startswith("event:")) == "event: job.queued"
        with ThreadPoolExecutor(1) as pool:
            long_poll = pool.submit(requests.get, f"{api.url}/v1/jobs/{job['id']}?wait=25", headers=user, timeout=30)
            wait_until(lambda: requests_for(fault_stack, "drain me"), 20, what="the model call")

            api.process.send_signal(signal.SIGTERM)  # while both requests wait for the reply
            rest = [line for line in lines if line.startswith("event:")]
            assert rest[-1] == "event: job.succeeded", rest
            assert long_poll.result().status_code == 200 and long_poll.result().json()["status"] == "succeeded"
        # Well inside the graceful timeout (30 s): idle keep-alive connections do not hold it.
        assert api.process.wait(10) == 0
    finally:
        api.stop()
    assert_consistent(fault_stack)
