"""Reading a conversation by page and as an export: order, cursors, limits, ownership,
a page while a turn runs, the export's lines, deletion, and what a page costs in storage
(nothing, with turn rows keeping their entries; once per older turn without)."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from api.history import encode_cursor
from bench import seed
from shared.models import Conversation, Turn
from shared.users import get_or_create_user, issue_key
from tests.integration.helpers import new_conversation, say, submit, wait_job
from tests.integration.sse import SseReader

TURNS = 4  # 8 messages: enough to page through with odd limits that cut turns in half


@pytest.fixture(scope="module")
def talked(app, make_module_user):
    """A conversation of TURNS real turns (worker, model, log), shared by the read-only tests."""
    client, owner = app.test_client(), make_module_user()
    conversation_id = new_conversation(client, owner, name="paged")
    jobs = [say(client, owner, conversation_id, f"question {n}") for n in range(1, TURNS + 1)]
    whole = client.get(f"/v1/conversations/{conversation_id}", headers=owner).get_json()["messages"]
    return {"id": conversation_id, "owner": owner, "jobs": jobs, "whole": whole}


@pytest.fixture(scope="module")
def make_module_user(stack):
    def make() -> dict:
        with stack.services.sessions.begin() as session:
            key = issue_key(session, get_or_create_user(session, f"history-{uuid.uuid4().hex[:8]}"))
        return {"Authorization": f"Bearer {key}"}
    return make


def page(client, headers, conversation_id: str, status: int = 200, **query) -> dict:
    response = client.get(f"/v1/conversations/{conversation_id}/messages", query_string=query, headers=headers)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def walk(client, headers, conversation_id: str, limit: int, order: str) -> list[dict]:
    """Every message, page by page, following last_cursor."""
    seen, cursor = [], None
    while True:
        query = {"limit": limit, "order": order}
        if cursor:
            query["before" if order == "desc" else "after"] = cursor
        body = page(client, headers, conversation_id, **query)
        assert len(body["data"]) <= limit
        seen += body["data"]
        if not body["has_more"]:
            return seen
        cursor = body["last_cursor"]


def test_the_whole_read_is_every_turn_in_order_with_its_job(talked):
    whole = talked["whole"]
    assert [m["seq"] for m in whole] == list(range(1, 2 * TURNS + 1))
    assert [m["role"] for m in whole] == ["user", "assistant"] * TURNS
    assert [m["content"] for m in whole[::2]] == [f"question {n}" for n in range(1, TURNS + 1)]
    assert [m["content"] for m in whole[1::2]] == [job["reply"]["content"] for job in talked["jobs"]]
    assert [m["job_id"] for m in whole[::2]] == [m["job_id"] for m in whole[1::2]] == [j["id"] for j in talked["jobs"]]


def test_newest_first_by_default_and_oldest_first_on_request(client, talked):
    newest = page(client, talked["owner"], talked["id"], limit=3)
    assert newest["data"] == talked["whole"][::-1][:3] and newest["has_more"]
    oldest = page(client, talked["owner"], talked["id"], limit=3, order="asc")
    assert oldest["data"] == talked["whole"][:3] and oldest["has_more"]
    everything = page(client, talked["owner"], talked["id"], limit=100)
    assert everything["data"] == talked["whole"][::-1] and not everything["has_more"]


@pytest.mark.parametrize("limit", [1, 3, 4])
def test_cursors_page_through_everything_once_both_ways(client, talked, limit):
    assert walk(client, talked["owner"], talked["id"], limit, "desc") == talked["whole"][::-1]
    assert walk(client, talked["owner"], talked["id"], limit, "asc") == talked["whole"]


def test_a_page_between_two_cursors_and_back_towards_the_newest(client, talked):
    owner, whole = talked["owner"], talked["whole"]
    newest = page(client, owner, talked["id"], limit=2)
    older = page(client, owner, talked["id"], limit=3, before=newest["last_cursor"])
    assert [m["seq"] for m in older["data"]] == [6, 5, 4]
    # Scrolling forward again from the older page's oldest message: what came after it.
    forward = page(client, owner, talked["id"], limit=10, order="asc", after=older["last_cursor"])
    assert forward["data"] == whole[4:] and not forward["has_more"]
    between = page(client, owner, talked["id"], order="asc", after=older["last_cursor"], before=newest["first_cursor"])
    assert [m["seq"] for m in between["data"]] == [5, 6, 7]
    assert page(client, owner, talked["id"], before=older["last_cursor"], after=newest["first_cursor"])["data"] == []


def test_limits_and_cursors_this_api_never_made_are_400(stack, client, talked):
    owner, conversation_id = talked["owner"], talked["id"]
    too_many = page(client, owner, conversation_id, 400, limit=stack.settings.max_page_size + 1)
    assert too_many["error"]["type"] == "invalid_request" and "limit" in too_many["error"]["message"]
    page(client, owner, conversation_id, 400, limit=0)
    page(client, owner, conversation_id, 400, order="sideways")
    forged = base64.urlsafe_b64encode(b"seq:-4").decode()
    for bad in ("not a cursor", "%%%", forged, base64.urlsafe_b64encode(b"{}").decode()):
        for field in ("before", "after"):
            error = page(client, owner, conversation_id, 400, **{field: bad})["error"]
            assert error["type"] == "invalid_request" and error["message"].startswith(f"{field}:")


def test_another_users_conversation_is_404(client, talked, bob):
    for path in (f"/v1/conversations/{talked['id']}/messages", f"/v1/conversations/{talked['id']}/export",
                 f"/v1/conversations/{uuid.uuid4()}/messages", "/v1/conversations/not-an-id/export"):
        response = client.get(path, headers=bob)
        assert response.status_code == 404 and response.get_json()["error"]["type"] == "not_found", path


def test_export_is_one_message_a_line_oldest_first(client, talked):
    response = client.get(f"/v1/conversations/{talked['id']}/export", headers=talked["owner"])
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).splitlines()
    assert [json.loads(line) for line in lines] == talked["whole"]


def test_a_page_while_a_turn_runs_shows_committed_turns_only(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    first = say(client, alice, conversation_id, "before the long one")
    requests.post(f"{stack.model.url}/_control", json={"chunk_chars": 2, "stream_delay_ms": 1500},
                  timeout=5).raise_for_status()
    try:
        job = submit(client, alice, conversation_id, "a long one")
        events = SseReader(client.get(f"/v1/jobs/{job['id']}/events", headers=alice, buffered=False))
        while events.next_event().type != "message.delta":  # the model is answering: the turn runs
            pass
        during = page(client, alice, conversation_id)
        assert [(m["seq"], m["job_id"]) for m in during["data"]] == [(2, first["id"]), (1, first["id"])]
        exported = client.get(f"/v1/conversations/{conversation_id}/export", headers=alice).get_data(as_text=True)
        assert len(exported.splitlines()) == 2
        events.close()
    finally:
        requests.post(f"{stack.model.url}/_control", json={"chunk_chars": 8, "stream_delay_ms": 0},
                      timeout=5).raise_for_status()
    done = wait_job(client, alice, job["id"])
    # What a chat view does next: ask for what came after the newest message it shows.
    newer = page(client, alice, conversation_id, order="asc", after=during["first_cursor"])
    assert [(m["seq"], m["role"], m["content"]) for m in newer["data"]] == [
        (3, "user", "a long one"), (4, "assistant", done["reply"]["content"])]
    assert {m["job_id"] for m in newer["data"]} == {job["id"]} and not newer["has_more"]


def test_deleting_removes_what_the_reads_showed(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    say(client, alice, conversation_id, "soon gone")
    with stack.services.sessions() as session:
        prefix = session.get(Conversation, uuid.UUID(conversation_id)).s3_file_location
    assert stack.services.store.list_keys(prefix)
    assert client.delete(f"/v1/conversations/{conversation_id}", headers=alice).status_code == 204
    for path in ("/messages", "/export", ""):
        assert client.get(f"/v1/conversations/{conversation_id}{path}", headers=alice).status_code == 404
    assert stack.services.store.list_keys(prefix) == []


def seeded(stack, copies: bool):
    """125 turns seeded as the pipeline writes them (rows + log objects, with or without
    the rows' copies of their entries); returns its id, its prefix, request headers, and a
    counter of the storage GETs made meanwhile."""
    with stack.services.sessions.begin() as session:
        user = get_or_create_user(session, f"history-{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {issue_key(session, user)}"}
    conversation_id = seed.history(stack.services, user, 250, 40, copies=copies)
    with stack.services.sessions() as session:
        prefix = session.get(Conversation, uuid.UUID(conversation_id)).s3_file_location
    gets: list[int] = []
    events = stack.services.store.client.meta.events
    events.register("before-call.s3.GetObject", lambda **kwargs: gets.append(1))
    yield conversation_id, prefix, headers, gets
    events.unregister("before-call.s3.GetObject")


@pytest.fixture()
def long_history(stack):
    yield from seeded(stack, copies=True)


@pytest.fixture()
def older_history(stack):
    """As long_history, written before turn rows kept their entries."""
    yield from seeded(stack, copies=False)


def counted(gets: list, read):
    gets.clear()
    return read(), len(gets)


def copies_kept(stack, conversation_id: str) -> list[int]:
    with stack.services.sessions() as session:
        return list(session.scalars(select(Turn.seq).where(Turn.conversation_id == uuid.UUID(conversation_id),
                                                           Turn.entry.is_not(None)).order_by(Turn.seq)))


def reads(client, headers, conversation_id: str):
    newest = lambda: page(client, headers, conversation_id, limit=50)
    middle = lambda: page(client, headers, conversation_id, limit=50, before=encode_cursor(121))
    whole = lambda: client.get(f"/v1/conversations/{conversation_id}", headers=headers).get_json()["messages"]
    return newest, middle, whole


def test_a_page_reads_no_storage_however_long_the_history(stack, client, long_history):
    conversation_id, prefix, headers, gets = long_history
    newest, middle, whole = reads(client, headers, conversation_id)
    first_newest, newest_gets = counted(gets, newest)
    assert [m["seq"] for m in first_newest["data"]] == list(range(250, 200, -1)) and newest_gets == 0
    first_middle, middle_gets = counted(gets, middle)
    assert [m["seq"] for m in first_middle["data"]] == list(range(120, 70, -1)) and middle_gets == 0
    assert first_middle["data"][0]["content"].startswith("turn 60 ")
    first_whole, whole_gets = counted(gets, whole)
    assert len(first_whole) == 250 and whole_gets == 0
    assert first_whole[::-1][:50] == first_newest["data"]


def test_older_turns_are_read_from_the_log_once_then_from_their_copies(stack, client, older_history):
    conversation_id, prefix, headers, gets = older_history
    newest, middle, whole = reads(client, headers, conversation_id)
    first_newest, newest_gets = counted(gets, newest)
    assert [m["seq"] for m in first_newest["data"]] == list(range(250, 200, -1))
    assert newest_gets == 25 and copies_kept(stack, conversation_id) == list(range(101, 126))
    assert counted(gets, newest) == (first_newest, 0)
    first_middle, middle_gets = counted(gets, middle)
    assert first_middle["data"][0]["content"].startswith("turn 60 ") and middle_gets == 25
    first_whole, whole_gets = counted(gets, whole)
    assert whole_gets == 125 - 50 and copies_kept(stack, conversation_id) == list(range(1, 126))
    assert counted(gets, whole) == (first_whole, 0)
    assert first_whole[::-1][:50] == first_newest["data"]


def test_an_entry_that_is_not_its_turns_is_shown_but_never_copied(stack, client, older_history):
    conversation_id, prefix, headers, gets = older_history
    key = f"{prefix}turns/0000000004.json"
    forged = stack.services.store.get(key)
    forged["job_id"] = str(uuid.uuid4())
    stack.services.store.put(key, forged)
    oldest = page(client, headers, conversation_id, limit=10, order="asc")
    assert [m["seq"] for m in oldest["data"]] == list(range(1, 11))
    assert copies_kept(stack, conversation_id) == [1, 2, 3, 5]
    assert counted(gets, lambda: page(client, headers, conversation_id, limit=10, order="asc")) == (oldest, 1)


def test_reads_are_answered_when_copies_cannot_be_kept(stack, client, older_history, monkeypatch):
    conversation_id, prefix, headers, gets = older_history
    sessions = stack.services.sessions

    class Refusing:
        """The sessions factory with every write transaction refused, as a read-only replica would."""
        def __call__(self, *args, **kwargs):
            return sessions(*args, **kwargs)

        def begin(self):
            raise OperationalError("BEGIN", None, Exception("cannot execute UPDATE in a read-only transaction"))
    with monkeypatch.context() as patch:
        patch.setattr(stack.services, "sessions", Refusing())
        cold = page(client, headers, conversation_id, limit=50)
    assert [m["seq"] for m in cold["data"]] == list(range(250, 200, -1))
    assert copies_kept(stack, conversation_id) == []
    assert counted(gets, lambda: page(client, headers, conversation_id, limit=50)) == (cold, 25)
    assert copies_kept(stack, conversation_id) == list(range(101, 126))
