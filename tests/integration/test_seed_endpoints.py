"""The seed app's three endpoints, as its users called them (plus the key)."""
from __future__ import annotations


def test_new_chat_chat_and_get_conversation(client, alice):
    created = client.post("/new_chat", headers=alice)
    assert created.status_code == 201
    conversation_id = created.get_json()["conversation_id"]

    first = client.post("/chat", json={"user_input": "Hello"}, headers=alice)
    assert first.status_code == 200
    assert first.get_json()["conversation_id"] == conversation_id, "continues the current conversation"
    assert first.get_json()["response"] == 'offline model: received 1 messages; last: "Hello"'
    second = client.post("/chat", json={"user_input": "More"}, headers=alice).get_json()
    assert second["response"] == 'offline model: received 3 messages; last: "More"'

    for response in (client.get(f"/get_conversation?conversation_id={conversation_id}", headers=alice),
                     client.post("/get_conversation", json={"conversation_id": conversation_id}, headers=alice)):
        assert response.status_code == 200
        assert [m["content"] for m in response.get_json()["messages"]] == [
            "Hello", first.get_json()["response"], "More", second["response"]]


def test_chat_without_a_current_conversation_starts_one(client, make_user):
    headers = make_user()
    body = client.post("/chat", json={"user_input": "first ever", "conversation_name": "Named"}, headers=headers)
    assert body.status_code == 200
    conversation = client.get(f"/v1/conversations/{body.get_json()['conversation_id']}", headers=headers).get_json()
    assert conversation["name"] == "Named"
    again = client.post("/chat", json={"user_input": "next"}, headers=headers).get_json()
    assert again["conversation_id"] == body.get_json()["conversation_id"]


def test_chat_to_a_given_conversation(client, alice):
    one = client.post("/new_chat", headers=alice).get_json()["conversation_id"]
    client.post("/new_chat", headers=alice)  # now another one is current
    body = client.post("/chat", json={"user_input": "back to one", "conversation_id": one}, headers=alice).get_json()
    assert body["conversation_id"] == one


def test_seed_errors_use_the_envelope(client, alice):
    for response in (client.post("/chat", json={}, headers=alice),
                     client.post("/chat", data="nope", headers={**alice, "Content-Type": "application/json"}),
                     client.get("/get_conversation", headers=alice)):
        assert response.status_code == 400 and response.get_json()["error"]["type"] == "invalid_request"
