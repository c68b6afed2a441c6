"""After a whole flow, successes and failures alike, no secret appears in the API's log
records, the workers' output or any response (body or header).

The secrets are the caller's API key and webhook signing secret, ANTHROPIC_API_KEY and
the AWS secret key; the stack gives the last two distinctive values (tests/conftest.py),
so a match means a leak.
"""
from __future__ import annotations

import logging

from api import create_app
from shared.models import User
from shared.users import find_keys
from tests.security.support import WAIT, WebhookReceiver, bearer, new_key, revoke


class Recorder:
    """A test client that keeps every response's status line, headers and body."""

    def __init__(self, app):
        self.client, self.seen = app.test_client(), []

    def __call__(self, method: str, path: str, **kwargs):
        response = self.client.open(path, method=method, **kwargs)
        body = response.get_data(as_text=True)  # a finished job's event stream ends by itself
        self.seen.append(f"{response.status}\n{response.headers}\n{body}")  # not the request itself
        return response


def record_text(record: logging.LogRecord) -> str:
    return f"{record.getMessage()} {record.__dict__!r} {record.exc_text or ''}"


def test_no_secret_in_logs_or_responses(stack, app, caplog):
    caplog.set_level(logging.DEBUG)
    key = new_key(stack)
    secrets = {"the caller's API key": key, "the API key without its prefix": key[3:],
               "ANTHROPIC_API_KEY": stack.env["ANTHROPIC_API_KEY"],
               "AWS_SECRET_ACCESS_KEY": stack.env["AWS_SECRET_ACCESS_KEY"]}
    headers, call, hooks = bearer(key), Recorder(app), WebhookReceiver()

    # The happy path: a conversation, a turn (with a webhook), its stream, the reads, the seed's endpoints.
    conversation_id = call("POST", "/v1/conversations", json={"name": "plans"}, headers=headers).get_json()["id"]
    job = call("POST", f"/v1/conversations/{conversation_id}/messages",
               json={"content": "hello", "callback_url": hooks.url},
               headers={**headers, "Idempotency-Key": "scan-1"}).get_json()["job"]
    assert call("GET", f"/v1/jobs/{job['id']}?wait={WAIT}", headers=headers).get_json()["status"] == "succeeded"
    assert hooks.arrived.wait(WAIT), "the webhook was delivered"
    hooks.close()
    call("GET", f"/v1/jobs/{job['id']}/events", headers=headers)
    call("GET", f"/v1/conversations/{conversation_id}", headers=headers)
    call("GET", "/v1/conversations", headers=headers)
    call("POST", "/new_chat", headers=headers)
    assert call("POST", "/chat", json={"user_input": "and again"}, headers=headers).status_code == 200
    call("GET", f"/get_conversation?conversation_id={conversation_id}", headers=headers)
    for path in ("/readyz", "/metrics", "/openapi.json"):
        call("GET", path)

    # Failures: a job that fails, a conflict, bad input carrying the key, bad keys, a rate limit.
    too_long = "z" * (4 * stack.settings.max_context_tokens + 40)
    failing = call("POST", f"/v1/conversations/{conversation_id}/messages", json={"content": too_long},
                   headers=headers).get_json()["job"]
    assert call("GET", f"/v1/jobs/{failing['id']}?wait={WAIT}", headers=headers).get_json()["status"] == "failed"
    call("GET", f"/v1/jobs/{failing['id']}/events", headers=headers)
    call("POST", f"/v1/jobs/{job['id']}/cancel", headers=headers)
    call("GET", f"/v1/conversations?limit={key}", headers=headers)
    call("GET", f"/v1/conversations?cursor={key}", headers=headers)
    call("POST", "/v1/conversations", json={"name": key, "unexpected": key}, headers=headers)
    call("POST", f"/v1/conversations/{conversation_id}/messages", json={"content": "x"},
         headers={**headers, "Idempotency-Key": key + "\x00"})
    for wrong in (key + "x", key[:-1], key.upper()):
        call("GET", "/v1/conversations", headers=bearer(wrong))
    call("GET", "/v1/conversations", headers={"Authorization": f"Basic {key}"})
    limited = Recorder(create_app(stack.settings.model_copy(update={"rate_limit_per_minute": 1}), stack.services))
    limited("GET", "/v1/conversations", headers=headers)
    assert limited("GET", "/v1/conversations", headers=headers).status_code == 429
    with stack.services.sessions() as session:
        secrets["the webhook signing secret"] = session.get(User, find_keys(session, key)[0].user_id).webhook_secret
    assert secrets["the webhook signing secret"], "the delivery was signed with it"
    revoke(stack, key)
    assert call("GET", "/v1/conversations", headers=headers).status_code == 401

    sources = {"API log records": "\n".join(record_text(r) for r in caplog.records),
               "responses": "\n".join(call.seen + limited.seen), "webhook deliveries": repr(hooks.received)}
    for worker in stack.workers:  # everything each worker printed since it started
        sources[f"worker {' '.join(worker.process.args[-9:-7])}"] = "".join(worker.lines)
    assert caplog.records and all(sources.values()), "nothing was captured, so nothing was checked"
    leaks = [f"{name} in {where}" for where, text in sources.items() for name, secret in secrets.items()
             if secret in text]
    assert not leaks, leaks
