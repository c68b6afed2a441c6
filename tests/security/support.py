"""Helpers the security tests share: keys, revocation, the error envelope."""
from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.users import find_keys, get_or_create_user, issue_key, revoke_key

WAIT = 20


def new_key(stack, name: str | None = None) -> str:
    with stack.services.sessions.begin() as session:
        return issue_key(session, get_or_create_user(session, name or f"sec-{uuid.uuid4().hex[:8]}"))


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def revoke(stack, key: str) -> None:
    with stack.services.sessions.begin() as session:
        (row,) = find_keys(session, key)
        assert revoke_key(session, row.id)


def assert_envelope(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.is_json, response.data[:300]
    error = response.get_json()["error"]
    assert set(error) == {"type", "message"} and error["message"], error
    if type_:
        assert error["type"] == type_, error
    return error


def finished_job(client, headers: dict, conversation_id: str, content: str = "hello") -> dict:
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content},
                           headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job"]["id"]
    job = client.get(f"/v1/jobs/{job_id}?wait={WAIT}", headers=headers).get_json()
    assert job["status"] in ("succeeded", "failed", "cancelled"), job
    return job



class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, *args) -> None:
        pass


class WebhookReceiver:
    """An HTTP server on loopback that answers 200 to every POST and keeps what it got."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        self.server.received, self.server.arrived = [], threading.Event()
        self.received, self.arrived = self.server.received, self.server.arrived
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
