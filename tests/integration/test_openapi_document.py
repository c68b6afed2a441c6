"""The served /openapi.json states what the server enforces, and the server enforces what
it states: bounds from the settings, model choices, strict dates, 405 with Allow, the
error envelope, and the SSE events as they really arrive."""
from __future__ import annotations

import json

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.integration.sse import parse
from tests.security.support import assert_envelope

DOC = "urn:parley:openapi"
EVENT_TYPES = {"job.queued", "job.started", "message.delta", "message.reset", "job.succeeded", "job.failed",
               "job.cancelled", "thinking.delta", "tool.call.delta", "tool.call",
               "tool.result", "job.requires_action"}


def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def query_parameter(spec: dict, path: str, name: str) -> dict:
    (parameter,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
    return parameter["schema"]


def test_bounds_from_the_settings_are_stated_and_held(client, alice, stack):
    spec = document(client)
    page = query_parameter(spec, "/v1/conversations", "limit")["maximum"]
    wait = query_parameter(spec, "/v1/jobs/{job_id}", "wait")["maximum"]
    assert (page, wait) == (stack.settings.max_page_size, stack.settings.max_wait_seconds)
    assert client.get(f"/v1/conversations?limit={page}", headers=alice).status_code == 200
    assert_envelope(client.get(f"/v1/conversations?limit={page + 1}", headers=alice), 400)

    model = spec["components"]["schemas"]["ConversationIn"]["properties"]["model"]
    (choices,) = [branch["enum"] for branch in model["anyOf"] if "enum" in branch]
    assert choices == client.get("/v1/models", headers=alice).get_json()["data"]
    assert client.post("/v1/conversations", json={"model": choices[-1]}, headers=alice).status_code == 201
    assert_envelope(client.post("/v1/conversations", json={"model": "claude-unknown"}, headers=alice), 400)


def test_dates_are_yyyy_mm_dd_and_nothing_else(client, alice):
    assert query_parameter(document(client), "/v1/usage", "to")["anyOf"][0] == {"type": "string", "format": "date"}
    for bad in ("0", "1700000000", "2026-1-5", "20260105", "2026-01-05T00:00:00", "2026-02-30"):
        error = assert_envelope(client.get(f"/v1/usage?to={bad}", headers=alice), 400, "invalid_request")
        assert error["message"].startswith("to: "), error
    report = client.get("/v1/usage?from=2026-01-01&to=2026-01-05", headers=alice).get_json()
    assert (report["from"], report["to"]) == ("2026-01-01", "2026-01-05")


def test_an_undeclared_method_is_405_with_allow(client, alice):
    response = client.put("/v1/usage", headers=alice)
    assert_envelope(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}


def test_every_error_response_is_the_envelope(client):
    spec = document(client)
    assert "ValidationErrorModel" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45" and (path, status) != ("/readyz", "503"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path, status)


def test_the_seed_endpoints_state_their_bodies(client):
    paths = document(client)["paths"]
    assert paths["/chat"]["post"]["requestBody"]["required"] is True
    assert paths["/new_chat"]["post"]["requestBody"]["required"] is False
    assert paths["/get_conversation"]["post"]["requestBody"]["required"] is True


def test_streamed_events_match_the_documented_event_schema(client, alice):
    spec = document(client)
    stream = spec["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]["responses"]["200"]
    assert stream["content"]["text/event-stream"]["itemSchema"] == {"$ref": "#/components/schemas/JobEvent"}
    registry = Registry().with_resource(DOC, Resource.from_contents(spec, default_specification=DRAFT202012))
    branches = spec["components"]["schemas"]["JobEvent"]["oneOf"]
    documented = {branch["properties"]["event"]["const"]: n for n, branch in enumerate(branches)}
    assert set(documented) == EVENT_TYPES

    thinking = {"thinking": {"type": "adaptive"}}  # so its thinking.delta events are checked too
    conversation = client.post("/v1/conversations", json=thinking, headers=alice).get_json()["id"]
    response = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "stream me"},
                           headers={**alice, "Accept": "text/event-stream"})
    events, _ = parse(response.get_data(as_text=True))
    assert [e.type for e in events][:1] == ["job.queued"] and events[-1].type == "job.succeeded", events
    assert {"message.delta", "thinking.delta"} <= {e.type for e in events}
    tools = {"tools": [{"name": "clock", "input_schema": {"type": "object"}}]}  # and a reply that calls a tool
    conversation = client.post("/v1/conversations", json=tools, headers=alice).get_json()["id"]
    response = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "call tool clock {}"},
                           headers={**alice, "Accept": "text/event-stream"})
    calling, _ = parse(response.get_data(as_text=True))
    assert [e.type for e in calling][-2:] == ["tool.call", "job.requires_action"], calling
    assert "tool.call.delta" in {e.type for e in calling}
    events += calling
    envelope = jsonschema.Draft202012Validator({"$ref": f"{DOC}#/components/schemas/JobEvent"}, registry=registry)
    for event in events:
        envelope.validate({"id": event.id, "event": event.type, "data": json.dumps(event.data)})
        # contentSchema only annotates the string: decode it and hold it to its schema too.
        content = f"{DOC}#/components/schemas/JobEvent/oneOf/{documented[event.type]}/properties/data/contentSchema"
        jsonschema.Draft202012Validator({"$ref": content}, registry=registry).validate(event.data)
