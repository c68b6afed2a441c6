"""Webhooks: the final job POSTed to callback_url, signed, retried, recorded on the job."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func

from shared.models import Conversation, Job
from tests.integration.helpers import new_conversation, wait_job
from tests.integration.receivers import (Resolver, endless_body, in_turn, status,
                                         trickled_status)
from worker.webhook_client import WebhookClient
from worker.webhooks import deliver


class Receiver:
    """A webhook endpoint: answers with the given statuses in turn, records every call."""

    def __init__(self, statuses=(200,), hold: threading.Event | None = None):
        self.statuses, self.hold = list(statuses), hold
        self.calls: list[tuple[dict, bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                with receiver.arrived:
                    receiver.calls.append((dict(self.headers), body))
                    status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%s/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_calls(self, count: int, timeout: float = 20) -> list[tuple[dict, bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.calls) >= count, timeout), self.calls
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    made = []

    def make(*args, **kwargs) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


def submit_with_callback(client, headers, content: str, url: str) -> dict:
    conversation_id = new_conversation(client, headers)
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": content, "callback_url": url}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]


def webhook_of(client, headers, job_id: str, until: set[str], tries: int = 200) -> dict:
    """The job's webhook record once its status is in `until`; deliveries run in another process."""
    pause = threading.Event()
    for _ in range(tries):
        webhook = client.get(f"/v1/jobs/{job_id}", headers=headers).get_json()["webhook"]
        if webhook["status"] in until:
            return webhook
        pause.wait(0.05)
    raise AssertionError(webhook)


def test_final_job_is_posted_signed(client, alice, receiver):
    hook = receiver()
    job = submit_with_callback(client, alice, "Hello", hook.url)
    finished = wait_job(client, alice, job["id"])
    (headers, body), = hook.wait_calls(1)

    delivered = json.loads(body)
    assert delivered["id"] == job["id"] and delivered["status"] == "succeeded"
    assert delivered["reply"] == finished["reply"]
    assert headers["Parley-Event"] == "job.succeeded" and headers["Parley-Delivery-Attempt"] == "1"
    secret = client.get("/v1/webhook-secret", headers=alice).get_json()["secret"]
    expected = hmac.new(secret.encode(), headers["Parley-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(headers["Parley-Signature"], "v1=" + expected.hexdigest())

    webhook = webhook_of(client, alice, job["id"], {"delivered"})
    assert [(a["attempt"], a["status_code"]) for a in webhook["attempts"]] == [(1, 200)]


def test_failed_deliveries_are_retried_and_recorded(client, alice, receiver):
    hook = receiver(statuses=(500, 503, 204))
    job = submit_with_callback(client, alice, "Hello", hook.url)
    calls = hook.wait_calls(3)
    assert [h["Parley-Delivery-Attempt"] for h, _ in calls] == ["1", "2", "3"]
    assert len({body for _, body in calls}) == 1  # the same job each time

    webhook = webhook_of(client, alice, job["id"], {"delivered"})
    assert [a["status_code"] for a in webhook["attempts"]] == [500, 503, 204]


def test_delivery_gives_up_after_the_retry_window(client, alice, receiver):
    hook = receiver(statuses=(500,))
    job = submit_with_callback(client, alice, "Hello", hook.url)
    webhook = webhook_of(client, alice, job["id"], {"failed"})  # WEBHOOK_RETRY_WINDOW_SECONDS=3 in tests
    assert len(webhook["attempts"]) >= 2 and {a["status_code"] for a in webhook["attempts"]} == {500}
    assert len(hook.calls) == len(webhook["attempts"])


def test_a_slow_receiver_does_not_hold_up_replies(client, alice, receiver):
    release = threading.Event()
    hook = receiver(hold=release)
    try:
        job = submit_with_callback(client, alice, "Hello", hook.url)
        assert wait_job(client, alice, job["id"])["status"] == "succeeded"
        # the receiver has not answered yet, and the next message's reply comes anyway
        second = submit_with_callback(client, alice, "Again", hook.url)
        assert wait_job(client, alice, second["id"])["status"] == "succeeded"
    finally:
        release.set()
    assert len(hook.wait_calls(2)) == 2


def test_cancelled_job_is_delivered_too(client, alice, receiver):
    hook = receiver()
    conversation_id = new_conversation(client, alice)
    blocker = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "first"},
                          headers=alice).get_json()["job"]
    queued = client.post(f"/v1/conversations/{conversation_id}/messages",
                         json={"content": "second", "callback_url": hook.url}, headers=alice).get_json()["job"]
    client.post(f"/v1/jobs/{queued['id']}/cancel", headers=alice)
    wait_job(client, alice, blocker["id"])
    (headers, body), = hook.wait_calls(1)
    assert headers["Parley-Event"] == "job.cancelled" and json.loads(body)["status"] == "cancelled"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http:///nohost",
                                 "https://user:pw@example.com/", "http://example.com:99999/"])
def test_bad_callback_url_is_a_400_and_queues_nothing(client, alice, url):
    conversation_id = new_conversation(client, alice)
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": "Hello", "callback_url": url}, headers=alice)
    assert response.status_code == 400 and response.get_json()["error"]["message"].startswith("callback_url")
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["message_count"] == 0


def test_secret_rotation(client, alice, bob):
    first = client.get("/v1/webhook-secret", headers=alice).get_json()["secret"]
    assert client.get("/v1/webhook-secret", headers=alice).get_json()["secret"] == first
    rotated = client.post("/v1/webhook-secret/rotate", headers=alice).get_json()["secret"]
    assert rotated != first and rotated.startswith("whsec_")
    assert client.get("/v1/webhook-secret", headers=bob).get_json()["secret"] not in (first, rotated)


def attempts_of(webhook: dict) -> list[tuple]:
    return [(a["attempt"], a["status_code"], a["error"]) for a in webhook["attempts"]]


def test_a_trickling_receiver_is_cut_at_the_deadline_and_recorded(client, alice, raw_receiver, stack):
    hook = raw_receiver(in_turn(trickled_status(), status(204)))
    job = submit_with_callback(client, alice, "Hello", f"http://127.0.0.1:{hook.port}/hook")

    webhook = webhook_of(client, alice, job["id"], {"delivered"})
    deadline = f"{stack.settings.webhook_timeout_seconds:g}"  # WEBHOOK_TIMEOUT_SECONDS=2 in tests
    assert attempts_of(webhook) == [(1, None, f"no response within the {deadline} s deadline"), (2, 204, None)]
    assert hook.dropped.is_set() and len(hook.requests) == 2


def test_a_redirect_is_recorded_and_not_followed(client, alice, raw_receiver):
    elsewhere = raw_receiver(status(204))
    hook = raw_receiver(in_turn(status(307, b"Location: http://127.0.0.1:%d/" % elsewhere.port), status(204)))
    job = submit_with_callback(client, alice, "Hello", f"http://127.0.0.1:{hook.port}/hook")

    webhook = webhook_of(client, alice, job["id"], {"delivered"})
    assert attempts_of(webhook) == [(1, 307, "redirect not followed"), (2, 204, None)]
    assert elsewhere.requests == []


def peak_memory(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_an_endless_body_leaves_the_workers_memory_flat(client, alice, raw_receiver, stack):
    offered = 256 * 1024 * 1024  # what a receiver that reads everything would keep
    webhooks_worker = stack.workers[1].process.pid
    before = peak_memory(webhooks_worker)
    hook = raw_receiver(endless_body(offered))
    job = submit_with_callback(client, alice, "Hello", f"http://127.0.0.1:{hook.port}/hook")

    webhook = webhook_of(client, alice, job["id"], {"delivered", "failed"})
    assert attempts_of(webhook) == [(1, 200, None)]
    assert peak_memory(webhooks_worker) - before < 32 * 1024 * 1024
    assert hook.dropped.wait(5) and hook.sent < offered


def ended_job(stack, client, headers, url: str) -> str:
    """A job that has just ended with its webhook due, sent to no deliverer: the test's own is the only one."""
    conversation_id = uuid.UUID(new_conversation(client, headers))
    with stack.services.sessions.begin() as session:
        user_id = session.get(Conversation, conversation_id).user_id
        job = Job(user_id=user_id, conversation_id=conversation_id, status="cancelled", request={"content": "Hi"},
                  finished_at=func.now(), callback_url=url, webhook_status="pending", webhook_next_at=func.now())
        session.add(job)
        session.flush()
        return str(job.id)


class NoDispatch:
    def webhook(self, job_id, countdown=None) -> None:
        raise AssertionError("a refused delivery is not retried")


def test_a_host_resolving_to_an_internal_address_is_refused_on_the_job(client, alice, raw_receiver, stack):
    hook = raw_receiver(status(204))
    job_id = ended_job(stack, client, alice, f"http://hooks.example.test:{hook.port}/hook")
    resolver = Resolver(["169.254.169.254", "127.0.0.1"])

    deliver(stack.services, job_id, NoDispatch(), WebhookClient(0.5, resolver=resolver))

    webhook = client.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["webhook"]
    assert webhook["status"] == "failed" and resolver.lookups == 1
    (attempt,) = webhook["attempts"]
    assert attempt["error"] == ("refused: 'hooks.example.test' resolves to a non-public address: "
                                "169.254.169.254 is not a public address")
    assert hook.requests == []
