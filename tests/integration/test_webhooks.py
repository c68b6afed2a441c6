"""Webhooks: the final job POSTed to callback_url, signed, retried, recorded on the job."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.helpers import new_conversation, wait_job


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
