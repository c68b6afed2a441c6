"""/v1/conversations: create, list, read, change, delete, and post messages; /v1/models."""
from __future__ import annotations

from flask import Response, jsonify, make_response
from flask_openapi3 import APIBlueprint, Tag

from api import schemas
from api.context import ctx, require_user, services
from api.errors import ApiError
from api.forks import fork_origin
from api.history import decode_cursor, encode_cursor, export_lines, read_all, read_page
from api.pages import check_limit
from api.service import (checked_thinking, create_conversation, delete_conversation, list_conversations,
                         own_conversation, parse_id, submit_message)
from api.stream import SSE_RESPONSE, check_stream_slot, sse_response, wants_stream
from api.tool_results import message_tools, set_conversation_tools
from shared.db import reading
from shared.jobs import job_to_dict
from shared.models import Conversation

blueprint = APIBlueprint("conversations", __name__, url_prefix="/v1/conversations",
                         abp_tags=[Tag(name="conversations")], abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        503: schemas.ErrorEnvelope})
EXPORT_RESPONSE = {"description": "NDJSON: one message a line, as in a page's `data`, oldest first",
                   "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}


def conversation_to_dict(conversation: Conversation) -> dict:
    return {
        "id": str(conversation.conversation_id),
        "name": conversation.conversation_name,
        "system": conversation.system,
        "model": conversation.model or services().settings.default_model,
        "thinking": conversation.thinking,
        "tools": conversation.tools,
        "tool_choice": conversation.tool_choice,
        "summary": ({"text": conversation.summary, "through_message": 2 * conversation.summary_seq}
                    if conversation.summary else None),
        "message_count": conversation.message_count,
        "input_tokens": conversation.input_tokens,
        "output_tokens": conversation.output_tokens,
        "cache_creation_input_tokens": conversation.cache_creation_input_tokens,
        "cache_read_input_tokens": conversation.cache_read_input_tokens,
        "cost_usd": float(conversation.cost_usd or 0),
        "cache_hit_ratio": _cache_hit_ratio(conversation),
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "forked_from": fork_origin(conversation),
    }


def _cache_hit_ratio(conversation: Conversation) -> float | None:
    prompt = (conversation.input_tokens + conversation.cache_creation_input_tokens
              + conversation.cache_read_input_tokens)
    return round(conversation.cache_read_input_tokens / prompt, 4) if prompt else None


def _check_text(field: str, value: str | None, limit: int, status: int = 400) -> None:
    if value is not None and len(value) > limit:
        raise ApiError(status, "too_large" if status == 413 else "invalid_request",
                       f"{field}: longer than {limit} characters.")


def _check_fields(body: schemas.ConversationIn | schemas.ConversationPatch) -> None:
    settings = services().settings
    _check_text("name", body.name, settings.max_name_chars)
    _check_text("system", body.system, settings.max_system_chars, status=413)
    if body.model is not None and body.model not in settings.model_choices:
        raise ApiError(400, "invalid_request", f"model: {body.model!r} is not offered here; "
                       f"choose one of {', '.join(sorted(settings.model_choices))} (GET /v1/models).")


@blueprint.post("", responses={201: schemas.Conversation})
def create(body: schemas.ConversationIn):
    """Start a conversation, optionally with its own system prompt and model."""
    user = require_user()
    _check_fields(body)
    thinking = _stored(_thinking(body.model or services().settings.default_model, body.thinking))
    with services().sessions.begin() as session:
        conversation = create_conversation(session, user, body.name, body.system, body.model, thinking)
        set_conversation_tools(conversation, body)
        payload = conversation_to_dict(conversation)
    return payload, 201


@blueprint.get("", responses={200: schemas.ConversationPage})
def list_(query: schemas.ListQuery):
    """The caller's conversations, newest first."""
    user = require_user()
    check_limit(query.limit, services().settings.max_page_size)
    with reading(services().sessions) as session:
        rows, next_cursor = list_conversations(session, user, query.limit, query.cursor)
        return {"data": [conversation_to_dict(c) for c in rows], "next_cursor": next_cursor}


@blueprint.get("/<conversation_id>", responses={200: schemas.ConversationWithMessages, 404: schemas.ErrorEnvelope})
def read(path: schemas.ConversationPath, query: schemas.ReadQuery):
    """A conversation with every message, in order (replies' thinking with include=thinking)."""
    user = require_user()
    with reading(services().sessions) as session:
        conversation = own_conversation(session, user, path.conversation_id)
        return {**conversation_to_dict(conversation),
                "messages": read_all(services(), session, conversation, query.include == "thinking")}


@blueprint.get("/<conversation_id>/messages", responses={200: schemas.MessagePage, 404: schemas.ErrorEnvelope})
def messages_page(path: schemas.ConversationPath, query: schemas.MessagesQuery):
    """A page of messages, newest first (order=asc: oldest first); page on with the cursors."""
    user = require_user()
    check_limit(query.limit, services().settings.max_page_size)
    before = decode_cursor(query.before, "before") if query.before is not None else None
    after = decode_cursor(query.after, "after") if query.after is not None else None
    with reading(services().sessions) as session:
        conversation = own_conversation(session, user, path.conversation_id)
        page = read_page(services(), session, conversation, query.limit, query.order, before, after,
                         thinking=query.include == "thinking")
    ends = [encode_cursor(page.messages[i]["seq"]) if page.messages else None for i in (0, -1)]
    return {"data": page.messages, "has_more": page.has_more, "first_cursor": ends[0], "last_cursor": ends[1]}


@blueprint.get("/<conversation_id>/export", responses={200: EXPORT_RESPONSE, 404: schemas.ErrorEnvelope})
def export(path: schemas.ConversationPath):
    """The whole conversation as NDJSON, one message a line, oldest first, streamed as it is read."""
    user = require_user()
    with reading(services().sessions) as session:
        conversation = own_conversation(session, user, path.conversation_id)
        conversation_id, through = conversation.conversation_id, conversation.turn_count
    return Response(export_lines(services(), conversation_id, through), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="conversation-{conversation_id}.ndjson"'})


@blueprint.patch("/<conversation_id>", responses={200: schemas.Conversation, 404: schemas.ErrorEnvelope})
def update(path: schemas.ConversationPath, body: schemas.ConversationPatch):
    """Rename a conversation, or change its system prompt or model (from the next message on)."""
    user = require_user()
    _check_fields(body)
    with services().sessions.begin() as session:
        conversation = own_conversation(session, user, path.conversation_id, lock=True)
        changed = body.model_fields_set
        if "thinking" in changed or ("model" in changed and conversation.thinking):  # still taken by the model?
            model = (body.model if "model" in changed else conversation.model) or services().settings.default_model
            conversation.thinking = _stored(_thinking(model, body.thinking if "thinking" in changed
                                                      else conversation.thinking))
        for field, column in (("name", "conversation_name"), ("system", "system"), ("model", "model")):
            if field in body.model_fields_set:
                setattr(conversation, column, getattr(body, field))
        set_conversation_tools(conversation, body)
        session.flush()
        session.refresh(conversation)
        return conversation_to_dict(conversation)


def _thinking(model: str, setting: schemas.ThinkingIn | dict | None) -> dict | None:
    """A thinking setting checked against what the model takes (a 400 if it does not)."""
    if isinstance(setting, schemas.ThinkingIn):
        setting = setting.model_dump(exclude_none=True)
    return checked_thinking(services(), ctx().catalog, model, setting)


def _stored(setting: dict | None) -> dict | None:
    """A conversation keeps no setting for thinking off (a message's override does)."""
    return None if setting == {"type": "disabled"} else setting


@blueprint.delete("/<conversation_id>", responses={204: None, 404: schemas.ErrorEnvelope})
def remove(path: schemas.ConversationPath):
    """Delete a conversation: its rows, its log and its cached window."""
    user = require_user()
    with services().sessions() as session:
        conversation = own_conversation(session, user, path.conversation_id)
        delete_conversation(services(), session, conversation)
    return "", 204


@blueprint.post("/<conversation_id>/messages",
                responses={200: SSE_RESPONSE, 202: schemas.JobEnvelope, 404: schemas.ErrorEnvelope,
                           409: schemas.ErrorEnvelope, 413: schemas.ErrorEnvelope, 429: schemas.ErrorEnvelope})
def post_message(path: schemas.ConversationPath, body: schemas.MessageIn, header: schemas.IdempotencyHeader):
    """Queue a user message; the reply comes as the job's result. With
    `Accept: text/event-stream` the response streams the job's events instead."""
    user = require_user()
    if wants_stream():
        check_stream_slot()  # before the job exists: a refused stream must not leave a turn behind
    conversation_id = parse_id(path.conversation_id, "conversation")
    with services().sessions() as session:
        thinking = None
        if body.thinking:  # checked against the conversation's model, so read it first
            conversation = own_conversation(session, user, path.conversation_id)
            thinking = _thinking(conversation.model or services().settings.default_model, body.thinking)
        # Otherwise no read: the submit's lock checks the conversation is the user's (404).
        job, send_now = submit_message(services(), session, user, conversation_id,
                                       body.content, header.idempotency_key, body.on_busy, body.callback_url,
                                       body.attachments, thinking=thinking, tools=message_tools(body))
        payload = job_to_dict(job)
    if send_now:
        ctx().dispatch(job.id)
    location = {"Location": f"/v1/jobs/{payload['id']}"}
    if wants_stream():
        return sse_response(services(), payload["id"], 0, headers=location)
    response = make_response(jsonify(job=payload), 202)
    response.headers.update(location)
    return response


models_blueprint = APIBlueprint("models", __name__, url_prefix="/v1/models", abp_tags=[Tag(name="conversations")],
                                abp_security=[{"bearer": []}],
                                abp_responses={401: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})


@models_blueprint.get("", responses={200: schemas.ModelList})
def models():
    """The models a conversation may choose (ALLOWED_MODELS) and the default, each with
    its lifecycle as the provider reports it (a deprecated one shows when it retires)."""
    require_user()
    settings = services().settings
    return {"default": settings.default_model, "data": sorted(settings.model_choices),
            "models": ctx().catalog.describe()}
