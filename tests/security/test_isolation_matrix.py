"""Every endpoint × {owner, another user, no key, malformed key, revoked key}.

The routes come from the app's url_map, so an endpoint added without a row here
fails `test_every_route_is_in_the_matrix`. A request by anyone but the owner must
also leave everything of the owner's as it was.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.security.support import WAIT, assert_envelope, bearer, finished_job, new_key, revoke

IDENTITIES = ("owner", "other", "no_key", "malformed", "revoked")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@dataclass
class World:
    """The owner's conversation and finished job, and a key per identity."""
    client: object
    stack: object
    owner_name: str
    headers: dict[str, dict]
    conversation_id: str
    job_id: str
    fresh_ids: list[str] = field(default_factory=list)

    def fresh_conversation(self) -> str:
        """A new conversation of the owner's, for a request that changes or deletes one."""
        response = self.client.post("/v1/conversations", json={"name": "fresh"}, headers=self.headers["owner"])
        assert response.status_code == 201, response.get_json()
        self.fresh_ids.append(response.get_json()["id"])
        return self.fresh_ids[-1]

    def owner_view(self) -> dict:
        """What the owner can see, read with a key of its own so it cannot hit the rate limit."""
        observer = bearer(new_key(self.stack, self.owner_name))

        def get(path: str) -> tuple[int, object]:
            response = self.client.get(path, headers=observer)
            return response.status_code, response.get_json()

        view = {"list": get("/v1/conversations?limit=100"), "job": get(f"/v1/jobs/{self.job_id}")}
        for conversation_id in [self.conversation_id, *self.fresh_ids[-1:]]:
            view[conversation_id] = get(f"/v1/conversations/{conversation_id}")
        for path in ("/v1/webhook-secret", "/v1/usage", "/v1/files?limit=100"):
            if ("GET", path.split("?")[0]) in routes(self.client.application):
                view[path] = get(path)
        return view


Request = Callable[[World], tuple[str, dict]]


@dataclass(frozen=True)
class Row:
    request: Request  # (path, keyword arguments for client.open)
    owner: int
    other: int  # another user with a valid key
    public: bool = False


def at(path: str, **kwargs) -> Request:
    return lambda w: (path.format(c=w.conversation_id, j=w.job_id), kwargs)


def on_fresh(path: str, **kwargs) -> Request:
    return lambda w: (path.format(c=w.fresh_conversation()), kwargs)


def png_upload() -> dict:
    from io import BytesIO

    from tests.media import png
    return {"data": {"file": (BytesIO(png(8, 8)), "dot.png")}, "content_type": "multipart/form-data"}


def on_file(path: str, **kwargs) -> Request:
    """A new file of the owner's, for a request that reads or deletes one."""
    def request(w: World) -> tuple[str, dict]:
        response = w.client.post("/v1/files", headers=w.headers["owner"], **png_upload())
        assert response.status_code == 201, response.get_json()
        return path.format(f=response.get_json()["id"]), kwargs
    return request


def on_tool_call(w: World) -> tuple[str, dict]:
    """A new job of the owner's waiting for its tool call's result, and that result."""
    owner = w.headers["owner"]
    tool = {"name": "clock", "input_schema": {"type": "object"}}
    conversation_id = w.client.post("/v1/conversations", json={"tools": [tool]}, headers=owner).get_json()["id"]
    job = w.client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "call tool clock {}"},
                        headers=owner).get_json()["job"]
    job = w.client.get(f"/v1/jobs/{job['id']}?wait={WAIT}", headers=owner).get_json()
    (call,) = job["required_action"]["tool_calls"]
    return f"/v1/jobs/{job['id']}/tool_results", {"json": {"results": [{"tool_call_id": call["id"], "content": "noon"}]}}


def chat(w: World) -> tuple[str, dict]:
    return "/chat", {"json": {"user_input": "hi", "conversation_id": w.fresh_conversation()}}


MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(at("/healthz"), 200, 200, public=True),
    ("GET", "/readyz"): Row(at("/readyz"), 200, 200, public=True),
    ("GET", "/openapi.json"): Row(at("/openapi.json"), 200, 200, public=True),
    ("GET", "/metrics"): Row(at("/metrics"), 200, 200, public=True),
    ("GET", "/"): Row(at("/"), 200, 200, public=True),  # the chat page; its API calls carry the key
    ("GET", "/web/<path:filename>"): Row(at("/web/app.js"), 200, 200, public=True),
    ("POST", "/v1/conversations"): Row(at("/v1/conversations", json={"name": "matrix"}), 201, 201),
    ("GET", "/v1/conversations"): Row(at("/v1/conversations"), 200, 200),
    ("GET", "/v1/conversations/<conversation_id>"): Row(at("/v1/conversations/{c}"), 200, 404),
    ("GET", "/v1/conversations/<conversation_id>/messages"): Row(at("/v1/conversations/{c}/messages"), 200, 404),
    ("GET", "/v1/conversations/<conversation_id>/export"): Row(at("/v1/conversations/{c}/export"), 200, 404),
    ("PATCH", "/v1/conversations/<conversation_id>"): Row(on_fresh("/v1/conversations/{c}", json={"name": "x"}),
                                                          200, 404),
    ("DELETE", "/v1/conversations/<conversation_id>"): Row(on_fresh("/v1/conversations/{c}"), 204, 404),
    ("POST", "/v1/conversations/<conversation_id>/messages"): Row(
        on_fresh("/v1/conversations/{c}/messages", json={"content": "hi"}), 202, 404),
    ("POST", "/v1/conversations/<conversation_id>/fork"): Row(at("/v1/conversations/{c}/fork", json={"at_seq": 2}),
                                                              201, 404),
    ("GET", "/v1/conversations/<conversation_id>/forks"): Row(at("/v1/conversations/{c}/forks"), 200, 404),
    ("POST", "/v1/conversations/<conversation_id>/messages/<seq>/edit"): Row(
        at("/v1/conversations/{c}/messages/1/edit", json={"content": "edited"}), 202, 404),
    ("POST", "/v1/conversations/<conversation_id>/messages/<seq>/regenerate"): Row(
        at("/v1/conversations/{c}/messages/2/regenerate"), 202, 404),
    ("GET", "/v1/jobs/<job_id>"): Row(at("/v1/jobs/{j}"), 200, 404),
    ("GET", "/v1/jobs/<job_id>/events"): Row(at("/v1/jobs/{j}/events"), 200, 404),
    ("POST", "/v1/jobs/<job_id>/cancel"): Row(at("/v1/jobs/{j}/cancel"), 409, 404),  # the job has ended
    ("POST", "/v1/jobs/<job_id>/tool_results"): Row(on_tool_call, 202, 404),
    ("POST", "/v1/files"): Row(lambda w: ("/v1/files", png_upload()), 201, 201),
    ("GET", "/v1/files"): Row(at("/v1/files"), 200, 200),
    ("GET", "/v1/files/<file_id>"): Row(on_file("/v1/files/{f}"), 200, 404),
    ("GET", "/v1/files/<file_id>/content"): Row(on_file("/v1/files/{f}/content"), 200, 404),
    ("DELETE", "/v1/files/<file_id>"): Row(on_file("/v1/files/{f}"), 204, 404),
    ("GET", "/v1/usage"): Row(at("/v1/usage"), 200, 200),
    ("GET", "/v1/models"): Row(at("/v1/models"), 200, 200),
    ("GET", "/v1/webhook-secret"): Row(at("/v1/webhook-secret"), 200, 200),
    ("POST", "/v1/webhook-secret/rotate"): Row(at("/v1/webhook-secret/rotate"), 200, 200),
    ("POST", "/new_chat"): Row(at("/new_chat"), 201, 201),
    ("POST", "/chat"): Row(chat, 200, 404),
    ("GET", "/get_conversation"): Row(at("/get_conversation", query_string={"conversation_id": "{c}"}), 200, 404),
    ("POST", "/get_conversation"): Row(at("/get_conversation", json={"conversation_id": "{c}"}), 200, 404),
}


def routes(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules() for method in rule.methods - IGNORED_METHODS}


@pytest.fixture(scope="module")
def world(stack, app) -> World:
    client = app.test_client()
    owner_name = f"owner-{uuid.uuid4().hex[:8]}"
    owner, other, revoked = new_key(stack, owner_name), new_key(stack), new_key(stack, owner_name)
    revoke(stack, revoked)
    headers = {"owner": bearer(owner), "other": bearer(other), "no_key": {},
               "malformed": {"Authorization": "Bearer not-a-key"}, "revoked": bearer(revoked)}
    created = client.post("/v1/conversations", json={"name": "owned"}, headers=headers["owner"])
    conversation_id = created.get_json()["id"]
    job = finished_job(client, headers["owner"], conversation_id, "owner's secret plans")
    return World(client, stack, owner_name, headers, conversation_id, job["id"])


def test_every_route_is_in_the_matrix(app):
    missing = routes(app) - MATRIX.keys()
    assert not missing, f"add a row to MATRIX for each of {sorted(missing)}"


def test_every_documented_operation_is_a_route(app, client):
    spec = client.get("/openapi.json").get_json()
    documented = {(method.upper(), path.replace("{", "<").replace("}", ">"))
                  for path, operations in spec["paths"].items() for method in operations}
    assert documented <= routes(app)


def _fill(value, world: World):
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value.format(c=world.conversation_id, j=world.job_id) if isinstance(value, str) else value


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda route: f"{route[0]} {route[1]}")
def test_matrix(app, world, route, identity):
    if route not in routes(app):
        pytest.skip(f"{route[0]} {route[1]} is not in this app")
    row = MATRIX[route]
    path, kwargs = row.request(world)
    kwargs = _fill(kwargs, world)
    before = world.owner_view() if identity != "owner" and not row.public else None

    response = world.client.open(path, method=route[0], headers=world.headers[identity], **kwargs)
    try:
        expected = row.owner if identity == "owner" or row.public else (
            row.other if identity == "other" else 401)
        if expected >= 400:
            assert_envelope(response, expected, "unauthorized" if expected == 401 else None)
        else:
            assert response.status_code == expected, (response.status_code, response.data[:300])
        if route[1].endswith("/events") and expected == 200:
            assert response.mimetype == "text/event-stream"
        if response.status_code == 202:  # let the turn finish, so it cannot change the next cell's view
            job_id = response.get_json()["job"]["id"]
            world.client.get(f"/v1/jobs/{job_id}?wait={WAIT}", headers=world.headers["owner"])
    finally:
        response.close()  # an event stream is not read to its end

    if before is not None:
        assert world.owner_view() == before, "a request by someone else changed what the owner sees"
