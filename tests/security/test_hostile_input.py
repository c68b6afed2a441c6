"""Hostile input gets a 400 or 404 in the error envelope, never a 500, and stores nothing:
unknown fields, wrong types, invalid UTF-8, text PostgreSQL cannot hold, deep nesting,
ids that are not UUIDs, and odd or doubled Authorization headers."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.security.support import assert_envelope, bearer, new_key

# Each endpoint that reads a JSON body, with a body it accepts. {c} is a conversation of the caller's.
BODIES = {
    ("POST", "/v1/conversations"): {"name": "ok", "system": "ok"},
    ("PATCH", "/v1/conversations/{c}"): {"name": "ok"},
    ("POST", "/v1/conversations/{c}/messages"): {"content": "ok"},
    ("POST", "/chat"): {"user_input": "ok"},
    ("POST", "/new_chat"): {"conversation_name": "ok"},
    ("POST", "/get_conversation"): {"conversation_id": "{c}"},
}
# The seed's endpoints ignore fields they do not know, as the original app did.
LENIENT = {("POST", "/new_chat"), ("POST", "/get_conversation")}
NOT_UUIDS = ["not-a-uuid", "123", "%00", "..%2F..%2Fetc%2Fpasswd", "x" * 2000, "%F0%9F%99%82", "%ff%fe",
             "00000000-0000-0000-0000-00000000000g"]


@pytest.fixture()
def caller(stack, client):
    headers = bearer(new_key(stack))
    conversation_id = client.post("/v1/conversations", json={}, headers=headers).get_json()["id"]
    yield headers, conversation_id
    # Nothing hostile was stored: the conversation is as it was made.
    body = client.get(f"/v1/conversations/{conversation_id}", headers=headers).get_json()
    assert body["messages"] == [] and body["name"] is None, body


def send(client, headers, route, conversation_id, data: bytes, content_type="application/json"):
    method, path = route
    return client.open(path.format(c=conversation_id), method=method, data=data,
                       headers={**headers, "Content-Type": content_type})


def json_bytes(body: dict, conversation_id: str, escaped: bool = True) -> bytes:
    text = json.dumps({k: conversation_id if v == "{c}" else v for k, v in body.items()}, ensure_ascii=escaped)
    return text.encode("utf-8", "surrogatepass")  # unescaped, a surrogate becomes CESU-8 bytes


@pytest.mark.parametrize("route", sorted(BODIES), ids=" ".join)
def test_unknown_fields(client, caller, route):
    headers, conversation_id = caller
    body = {**BODIES[route], "unexpected": 1}
    response = send(client, headers, route, conversation_id, json_bytes(body, conversation_id))
    if route in LENIENT:
        assert response.status_code < 500, response.data[:300]
    else:
        assert_envelope(response, 400, "invalid_request")


@pytest.mark.parametrize("wrong", [123, 1.5, True, [], {"a": 1}], ids=repr)
@pytest.mark.parametrize("route", sorted(BODIES), ids=" ".join)
def test_wrong_types(client, caller, route, wrong):
    headers, conversation_id = caller
    for field in BODIES[route]:
        response = send(client, headers, route, conversation_id,
                        json_bytes({**BODIES[route], field: wrong}, conversation_id))
        if route[1].startswith("/v1/"):
            assert_envelope(response, 400, "invalid_request")
        else:  # the seed's endpoints read an id of another type as one that names nothing
            assert response.status_code in (400, 404), response.data[:300]
            assert_envelope(response, response.status_code)


@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "raw"])
@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x \udfff", "\ud83d"], ids=["nul", "high", "low", "half-emoji"])
@pytest.mark.parametrize("route", sorted(BODIES), ids=" ".join)
def test_text_postgres_cannot_hold(client, caller, route, text, escaped):
    # NUL: PostgreSQL text and jsonb refuse it. A lone surrogate: valid JSON, no UTF-8.
    headers, conversation_id = caller
    for field, value in BODIES[route].items():
        if value == "{c}":
            continue
        body = json_bytes({**BODIES[route], field: text}, conversation_id, escaped)
        assert_envelope(send(client, headers, route, conversation_id, body), 400, "invalid_request")


@pytest.mark.parametrize("payload", [
    b'{"name": "\xff\xfe"}', b"\xc3\x28",  # not UTF-8
    b'{"\\u0000": "a key with NUL"}',
    b"[" * 60_000 + b"]" * 60_000,  # deeper than the parser can go
    b"[1, 2]", b'"just a string"', b"null", b"{not json", b"",
], ids=["latin1", "bad-utf8", "nul-key", "deep", "array", "string", "null", "broken", "empty"])
@pytest.mark.parametrize("route", sorted(BODIES), ids=" ".join)
def test_bodies_that_are_not_a_json_object(client, caller, route, payload):
    headers, conversation_id = caller
    response = send(client, headers, route, conversation_id, payload)
    if payload == b"" and route == ("POST", "/new_chat"):
        assert response.status_code == 201  # the seed's /new_chat needs no body at all
        return
    assert_envelope(response, 400, "invalid_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_json_endpoints_refuse_other_content_types(client, caller, content_type):
    headers, conversation_id = caller
    response = send(client, headers, ("POST", "/v1/conversations/{c}/messages"), conversation_id,
                    b'{"content": "hi"}', content_type)
    assert_envelope(response, 400, "invalid_request")


def test_every_id_route_answers_404_for_ids_that_are_not_uuids(app, client, caller):
    headers, _ = caller
    bodies = {("PATCH", "/v1/conversations/<conversation_id>"): {"name": "x"},
              ("POST", "/v1/conversations/<conversation_id>/messages"): {"content": "x"},
              ("POST", "/v1/jobs/<job_id>/tool_results"): {"results": [{"tool_call_id": "x", "content": "y"}]},
              ("POST", "/v1/conversations/<conversation_id>/fork"): {"at_seq": 0},
              ("POST", "/v1/conversations/<conversation_id>/messages/<seq>/edit"): {"content": "x"}}
    id_routes = [(method, rule.rule) for rule in app.url_map.iter_rules() if rule.arguments
                 for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert len(id_routes) >= 6, id_routes
    for method, rule in id_routes:
        for bad in NOT_UUIDS:
            path = re.sub(r"<[^>]+>", bad, rule.replace("<seq>", "1"))  # a message number, not an id
            response = client.open(path, method=method, json=bodies.get((method, rule)), headers=headers)
            assert_envelope(response, 404, "not_found")
    for bad in NOT_UUIDS:
        assert_envelope(client.get(f"/get_conversation?conversation_id={bad}", headers=headers), 404)
        assert_envelope(client.post("/chat", json={"user_input": "x", "conversation_id": bad}, headers=headers), 404)


def test_idempotency_key_that_cannot_be_stored(client, caller):
    headers, conversation_id = caller
    for key in ("a\x00b", "k" * 201):
        response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "x"},
                               headers={**headers, "Idempotency-Key": key})
        assert_envelope(response, 400, "invalid_request")


def test_query_strings(client, caller):
    headers, _ = caller
    for query in ("limit=abc", "limit=1.5", "limit=-1", "limit=99999999999999999999999", "extra=1",
                  "cursor=%00", "cursor=%ff%fe", "cursor=" + "A" * 5000, "limit=%00"):
        assert_envelope(client.get(f"/v1/conversations?{query}", headers=headers), 400, "invalid_request")
    job = f"/v1/jobs/{uuid.uuid4()}"
    for query in ("wait=nan", "wait=inf", "wait=-1", "wait=1e400", "wait=abc", "extra=1"):
        assert_envelope(client.get(f"{job}?{query}", headers=headers), 400, "invalid_request")


def test_doubled_or_odd_authorization_never_authenticates(stack, client, caller):
    headers, _ = caller
    key, other_key = headers["Authorization"].split()[1], new_key(stack)
    odd = [
        [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {other_key}")],
        [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")],
        [("Authorization", f"Bearer {key}, Bearer {other_key}")],
        [("Authorization", f"Bearer {key} {other_key}")],
        [("Authorization", f"Basic {key}")],
        [("Authorization", key)],
        [("Authorization", f"Bearer {key[:-1]}")],
        [("Authorization", f"Bearer {key}x")],
        [("Authorization", "Bearer pk_" + "a" * 5000)],
        [("Authorization", "Bearer pk_\x00")],
        [("Authorization", "Bearer pk_é")],
        [("Authorization", "")],
    ]
    for header_list in odd:
        assert_envelope(client.get("/v1/conversations", headers=header_list), 401, "unauthorized")
    # The forms a client may legitimately send still work.
    for good in (f"Bearer {key}", f"bearer {key}", f"Bearer  {key} "):
        assert client.get("/v1/conversations", headers={"Authorization": good}).status_code == 200


def test_a_bad_key_is_refused_before_the_body_is_read(client):
    # Unauthenticated callers learn nothing about what the body should look like.
    response = client.post("/v1/conversations", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_envelope(response, 401, "unauthorized")
