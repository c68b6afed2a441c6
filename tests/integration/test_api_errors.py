"""Bad input, bad keys and other users' data: the error envelope, never a 500, nothing lost."""
from __future__ import annotations

import uuid

import pytest

from shared.models import ApiKey
from shared.users import hash_key
from tests.integration.helpers import new_conversation, say, submit


def assert_envelope(response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.is_json, response.data[:300]
    error = response.get_json()["error"]
    assert set(error) == {"type", "message"} and error["message"]
    if type_:
        assert error["type"] == type_
    return error


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer pk_not-a-real-key"}, {"Authorization": "Basic abc"},
    {"Authorization": "Bearer"}, {"Authorization": "pk_nothing"},
])
def test_missing_or_bad_key_is_401(client, headers):
    assert_envelope(client.get("/v1/conversations", headers=headers), 401, "unauthorized")
    assert_envelope(client.post("/chat", json={"user_input": "hi"}, headers=headers), 401)


def test_revoked_key_stops_working_at_once(stack, client, make_user):
    headers = make_user()
    assert client.get("/v1/conversations", headers=headers).status_code == 200
    key = headers["Authorization"].split()[1]
    with stack.services.sessions.begin() as session:
        session.query(ApiKey).filter(ApiKey.key_hash == hash_key(key)).update({"revoked_at": ApiKey.created_at})
    assert_envelope(client.get("/v1/conversations", headers=headers), 401)


def test_other_users_conversations_and_jobs_are_404(client, alice, bob):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "private")
    base = f"/v1/conversations/{conversation_id}"
    assert_envelope(client.get(base, headers=bob), 404, "not_found")
    assert_envelope(client.patch(base, json={"name": "mine now"}, headers=bob), 404)
    assert_envelope(client.delete(base, headers=bob), 404)
    assert_envelope(client.post(f"{base}/messages", json={"content": "hijack"}, headers=bob), 404)
    assert_envelope(client.get(f"/v1/jobs/{job['id']}", headers=bob), 404)
    assert_envelope(client.get(f"/get_conversation?conversation_id={conversation_id}", headers=bob), 404)
    assert_envelope(client.post("/chat", json={"user_input": "x", "conversation_id": conversation_id}, headers=bob), 404)
    assert conversation_id not in [c["id"] for c in client.get("/v1/conversations", headers=bob).get_json()["data"]]
    # Nothing changed for the owner.
    body = client.get(base, headers=alice).get_json()
    assert body["name"] is None and [m["content"] for m in body["messages"]][0::2] == ["private"]


@pytest.mark.parametrize("payload, content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"content": 5}', "application/json"),
    (b'{"content": ""}', "application/json"),
    (b"{}", "application/json"),
    (b'{"content": "hi", "extra": 1}', "application/json"),
    (b'{"content": "\xff\xfe"}', "application/json"),
    (b"content=hi", "application/x-www-form-urlencoded"),
])
def test_bad_message_bodies_are_400(client, alice, payload, content_type):
    conversation_id = new_conversation(client, alice)
    response = client.post(f"/v1/conversations/{conversation_id}/messages", data=payload,
                           headers={**alice, "Content-Type": content_type})
    assert_envelope(response, 400, "invalid_request")
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"] == []


def test_oversized_input_is_413_before_any_work(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    too_long = "x" * (stack.settings.max_message_chars + 1)
    assert_envelope(client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": too_long},
                                headers=alice), 413)
    huge_body = b'{"content": "' + b"y" * (stack.settings.max_request_bytes + 10) + b'"}'
    assert_envelope(client.post(f"/v1/conversations/{conversation_id}/messages", data=huge_body,
                                headers={**alice, "Content-Type": "application/json"}), 413)
    with stack.services.sessions() as session:
        from shared.models import Job
        assert session.query(Job).filter(Job.conversation_id == uuid.UUID(conversation_id)).count() == 0


def test_bad_ids_routes_and_methods(client, alice):
    assert_envelope(client.get("/v1/conversations/not-a-uuid", headers=alice), 404)
    assert_envelope(client.get(f"/v1/conversations/{uuid.uuid4()}", headers=alice), 404)
    assert_envelope(client.get("/v1/jobs/123", headers=alice), 404)
    assert_envelope(client.get("/no/such/route", headers=alice), 404)
    assert_envelope(client.put("/v1/conversations", headers=alice), 405)
    assert_envelope(client.get("/v1/conversations?limit=0", headers=alice), 400)
    assert_envelope(client.get("/v1/conversations?limit=100000", headers=alice), 400)
    assert_envelope(client.get("/v1/conversations?cursor=%%%", headers=alice), 400)
    assert_envelope(client.get(f"/v1/jobs/{uuid.uuid4()}?wait=31", headers=alice), 400)
    assert_envelope(client.get(f"/v1/jobs/{uuid.uuid4()}?wait=abc", headers=alice), 400)


def test_conversation_fields_are_checked(stack, client, alice):
    assert_envelope(client.post("/v1/conversations", json={"name": 7}, headers=alice), 400)
    assert_envelope(client.post("/v1/conversations", json={"name": "n" * (stack.settings.max_name_chars + 1)},
                                headers=alice), 400)
    assert_envelope(client.post("/v1/conversations", json={"unknown": True}, headers=alice), 400)


def test_a_message_longer_than_the_window_fails_its_job_clearly(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    job = submit(client, alice, conversation_id, "z" * (4 * stack.settings.max_context_tokens + 40))
    done = client.get(f"/v1/jobs/{job['id']}?wait=20", headers=alice).get_json()
    assert done["status"] == "failed" and done["error"]["type"] == "context_too_long"
    assert done["request"]["content"].startswith("zzz"), "the user's message stays on the job"
    # The conversation goes on.
    assert say(client, alice, conversation_id, "short")["reply"]["content"].startswith("offline model: received 1")


def test_openapi_document_describes_the_api(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/v1/conversations", "/v1/conversations/{conversation_id}",
                 "/v1/conversations/{conversation_id}/messages", "/v1/jobs/{job_id}",
                 "/chat", "/new_chat", "/get_conversation", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    post = spec["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]
    assert "202" in post["responses"] and "requestBody" in post


def test_key_command_issues_a_working_key(stack, client):
    import subprocess
    import sys

    from shared.config import ROOT

    result = subprocess.run([sys.executable, "-m", "api.keys", "carol"], cwd=ROOT, env=stack.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert client.get("/v1/conversations", headers={"Authorization": f"Bearer {key}"}).status_code == 200
