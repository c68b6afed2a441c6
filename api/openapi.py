"""What the served OpenAPI document says beyond the route models: the bounds that come
from settings (page size, wait, text lengths, model choices), the seed endpoints'
bodies (parsed by hand for their lenient clients), the events of the SSE responses, and
the error envelope on every error response. The server enforces each of these; the
document states them so that a request valid by the document is one the server takes.
"""
from __future__ import annotations

import copy

from api.schemas import ChatIn, NewChatIn, RegenerateIn, SeedConversationBody
from shared.config import Settings
from shared.webhooks import MAX_URL_CHARS

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
JOB = {"$ref": "#/components/schemas/Job"}
_NULLABLE = ("anyOf", "oneOf")


def complete(spec: dict, settings: Settings) -> dict:
    """Fill in `spec` (flask-openapi3's document) in place; safe to call on every request."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(SSE_SCHEMAS)
    for model in (ChatIn, NewChatIn, SeedConversationBody, RegenerateIn):  # routes that parse their bodies by hand
        schemas.setdefault(model.__name__, copy.deepcopy(model.model_json_schema()))  # that one is cached
    _bound_text(schemas, settings)
    for name in BODIES:
        for field in schemas.get(name, {}).get("properties", {}).values():
            branch = _string_branch(field)
            if branch.get("type") != "string" or "enum" in branch or NO_NUL in (branch.get("pattern"), *[
                    part.get("pattern") for part in branch.get("allOf", ())]):
                continue
            if "pattern" in branch:  # a rule of its own (e.g. not blank): both must hold
                branch.setdefault("allOf", []).append({"pattern": NO_NUL})
            else:
                branch["pattern"] = NO_NUL
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            _bound_parameters(operation, settings)
            _envelope_errors(operation)
            if (path, method) == ("/v1/files", "post"):  # read by hand (api/files.py), documented here
                operation["requestBody"] = UPLOAD_BODY
            if (path, method) in SEED_BODIES:
                model, required, description = SEED_BODIES[(path, method)]
                operation["requestBody"] = {"required": required, "description": description, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None:
                    stream["schema"] = {"type": "string", "description": SSE_DESCRIPTION}
                    stream["itemSchema"] = {"$ref": "#/components/schemas/JobEvent"}
    schemas.pop("ValidationErrorModel", None)  # flask-openapi3's; this API answers with the envelope
    _link(spec)
    return spec


# What a response's ids lead to (OpenAPI links): clients and stateful test tools follow them.
LINKS = {
    ("/v1/conversations", "post", "201"): ("$response.body#/id", "conversation_id", [
        ("/v1/conversations/{conversation_id}", "get"), ("/v1/conversations/{conversation_id}", "patch"),
        ("/v1/conversations/{conversation_id}", "delete"), ("/v1/conversations/{conversation_id}/messages", "post"),
        ("/v1/conversations/{conversation_id}/messages", "get")]),
    ("/v1/conversations/{conversation_id}/messages", "post", "202"): ("$response.body#/job/id", "job_id", [
        ("/v1/jobs/{job_id}", "get"), ("/v1/jobs/{job_id}/events", "get"), ("/v1/jobs/{job_id}/cancel", "post")]),
    ("/v1/conversations/{conversation_id}/fork", "post", "201"): ("$response.body#/id", "conversation_id", [
        ("/v1/conversations/{conversation_id}", "get"), ("/v1/conversations/{conversation_id}/messages", "post"),
        ("/v1/conversations/{conversation_id}/messages", "get")]),
    ("/v1/conversations/{conversation_id}/messages/{seq}/edit", "post", "202"): (
        "$response.body#/job/id", "job_id", [("/v1/jobs/{job_id}", "get"), ("/v1/jobs/{job_id}/events", "get")]),
    ("/v1/conversations/{conversation_id}/messages/{seq}/regenerate", "post", "202"): (
        "$response.body#/job/id", "job_id", [("/v1/jobs/{job_id}", "get"), ("/v1/jobs/{job_id}/events", "get")]),
    ("/v1/files", "post", "201"): ("$response.body#/id", "file_id", [
        ("/v1/files/{file_id}", "get"), ("/v1/files/{file_id}/content", "get"), ("/v1/files/{file_id}", "delete")]),
    ("/new_chat", "post", "201"): ("$response.body#/conversation_id", "conversation_id", [
        ("/get_conversation", "get")]),
}


def _link(spec: dict) -> None:
    paths = spec.get("paths", {})
    for (path, method, status), (value, name, targets) in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = {}
        for target_path, target_method in targets:
            target = paths.get(target_path, {}).get(target_method)
            if target is None or "operationId" not in target:
                continue
            links[target["operationId"]] = {"operationId": target["operationId"], "parameters": {name: value}}
        response["links"] = links


def _string_branch(schema: dict) -> dict:
    """The `string` part of an optional field (`anyOf: [string, null]`), or the field itself."""
    for keyword in _NULLABLE:
        for branch in schema.get(keyword, ()):
            if branch.get("type") == "string":
                return branch
    return schema


def _bound_text(schemas: dict, settings: Settings) -> None:
    choices = sorted(settings.model_choices)
    for name in ("ConversationIn", "ConversationPatch", *FORK_BODIES):
        properties = schemas.get(name, {}).get("properties", {})
        if "name" in properties:
            _string_branch(properties["name"])["maxLength"] = settings.max_name_chars
        if "system" in properties:
            _string_branch(properties["system"])["maxLength"] = settings.max_system_chars
        if "model" in properties:
            _string_branch(properties["model"])["enum"] = choices
    schemas["ChatIn"]["properties"]["user_input"]["maxLength"] = settings.max_message_chars
    for name in ("MessageIn", *FORK_BODIES):
        message = schemas.get(name, {}).get("properties", {})
        if "content" in message:
            message["content"]["maxLength"] = settings.max_message_chars
        if "callback_url" in message:
            # As shared.webhooks.url_problem checks it: absolute http(s), a host, no credentials.
            _string_branch(message["callback_url"]).update(
                format="uri", maxLength=MAX_URL_CHARS, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s\x00]+([/?#][^\s\x00]*)?$")


def _bound_parameters(operation: dict, settings: Settings) -> None:
    maxima = {"limit": settings.max_page_size, "wait": settings.max_wait_seconds}
    for parameter in operation.get("parameters", ()):
        if parameter.get("in") == "query" and parameter.get("name") in maxima:
            parameter["schema"]["maximum"] = maxima[parameter["name"]]


def _envelope_errors(operation: dict) -> None:
    """Every 4xx/5xx this API sends is the envelope (readiness's 503 excepted: its body
    names the failing service); flask-openapi3 documents its own 400 shape, which it
    never sends here."""
    for status, response in operation.get("responses", {}).items():
        if not status.startswith(("4", "5")):
            continue
        content = response.setdefault("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if schema.get("$ref", "").endswith("/Health"):
            continue
        content["application/json"] = {"schema": ENVELOPE}


SEED_BODIES = {
    ("/chat", "post"): (ChatIn, True, "the message, and optionally which conversation it goes to"),
    ("/new_chat", "post"): (NewChatIn, False, "optional: the new conversation's name"),
    ("/get_conversation", "post"): (SeedConversationBody, True,
                                    "which conversation (or `?conversation_id=`, as the seed's clients sent it)"),
    ("/v1/conversations/{conversation_id}/messages/{seq}/regenerate", "post"): (
        RegenerateIn, False, "optional: the fork's name and a callback URL"),
}
UPLOAD_BODY = {"required": True, "description": "the file, in a part named `file`; its type is judged from its bytes",
               "content": {"multipart/form-data": {"schema": {
                   "type": "object", "required": ["file"],
                   "properties": {"file": {"type": "string", "format": "binary"}}}}}}
# Request bodies whose strings the server refuses with NUL characters (api/strict_json.py).
FORK_BODIES = ("ForkIn", "EditIn", "RegenerateIn")
BODIES = ("ConversationIn", "ConversationPatch", "MessageIn", "ChatIn", "NewChatIn", "SeedConversationBody",
          *FORK_BODIES)
NO_NUL = "^[^\\x00]*$"

SSE_DESCRIPTION = ("Server-Sent Events, one per JobEvent: `id: N`, `event: <type>`, `data: <JSON>`, a blank "
                   "line; `: ping` comments while quiet. The last event is job.succeeded, job.failed, "
                   "job.cancelled or job.requires_action.")


def _event(type_: str, data: dict, description: str) -> dict:
    return {"type": "object", "description": description, "required": ["id", "event", "data"],
            "properties": {"id": {"type": "integer", "minimum": 1, "description": "resume after it with Last-Event-ID"},
                           "event": {"const": type_},
                           "data": {"contentMediaType": "application/json", "contentSchema": data}}}


SSE_SCHEMAS = {
    "JobEvent": {"oneOf": [
        _event("job.queued", JOB, "the job was accepted"),
        _event("job.started", {"type": "object", "required": ["attempt"],
                               "properties": {"attempt": {"type": "integer"}}}, "a worker took the job"),
        _event("message.delta", {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
               "the next piece of the reply's text"),
        _event("thinking.delta", {"type": "object", "required": ["thinking"],
                                  "properties": {"thinking": {"type": "string"}}},
               "the next piece of the reply's thinking (extended thinking on); all of it comes before the text"),
        _event("message.reset", {"type": "object", "required": ["reason"],
                                 "properties": {"reason": {"const": "retry"}, "attempt": {"type": "integer"}}},
               "the model call is being retried: drop the text (and thinking) received so far"),
        _event("job.succeeded", JOB, "the reply is complete (final)"),
        _event("job.failed", JOB, "the job failed; `error` says why (final)"),
        _event("job.cancelled", JOB, "the job was cancelled (final)"),
        _event("tool.call.delta", {"type": "object", "required": ["id", "name", "partial_json"],
                                   "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                                  "partial_json": {"type": "string"}}},
               "the next piece of a client tool call's input (JSON text) as the model writes it"),
        _event("tool.call", {"type": "object", "required": ["id", "name", "input"],
                             "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                            "input": {"type": "object"}}},
               "the reply calls a client tool (one event a call, before job.requires_action), or a server "
               "tool Claude ran (`server`: true)"),
        _event("tool.result", {"type": "object", "required": ["tool_use_id", "type", "content"],
                               "properties": {"tool_use_id": {"type": "string"}, "type": {"type": "string"},
                                              "content": {}}},
               "a server tool's result, as the API returned it (e.g. web_search_tool_result)"),
        _event("job.requires_action", JOB, "the reply called client tools; `required_action` lists the calls "
                                           "to answer with POST /v1/jobs/{id}/tool_results (final)"),
    ]},
}
