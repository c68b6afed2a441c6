"""The seed app's endpoints, kept so its users' clients and curl commands still work."""
from __future__ import annotations

from flask import request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import ValidationError

from api import schemas
from api.context import ctx, require_user, services
from api.errors import ApiError, validation_error_response
from api.history import read_all
from api.jobs import wait_for_job
from api.service import create_conversation, own_conversation, submit_message
from shared.models import Conversation, User

blueprint = APIBlueprint("seed", __name__, abp_tags=[Tag(name="seed-compatible")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        404: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})


def json_object() -> dict:
    """The seed accepted a missing body; an invalid one is still an error."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "Body must be a JSON object.")
    return body


def parse_body(model, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(400, "invalid_request", validation_error_response(error).get_json()["error"]["message"])


def _current_or_new(session, user: User, name: str | None) -> Conversation:
    db_user = session.get(User, user.id, with_for_update=True)
    if db_user.current_conversation_id:
        conversation = session.get(Conversation, db_user.current_conversation_id)
        if conversation is not None:
            return conversation
    conversation = create_conversation(session, user, name, None)
    db_user.current_conversation_id = conversation.conversation_id
    return conversation


@blueprint.post("/new_chat", responses={201: schemas.NewChatOut})
def new_chat():
    """Start a conversation and make it the caller's current one."""
    user = require_user()
    name = parse_body(schemas.NewChatIn, json_object()).conversation_name
    with services().sessions.begin() as session:
        conversation = create_conversation(session, user, name, None)
        session.get(User, user.id).current_conversation_id = conversation.conversation_id
        conversation_id = str(conversation.conversation_id)
    return {"conversation_id": conversation_id}, 201


@blueprint.post("/chat", responses={200: schemas.ChatOut, 202: schemas.ChatPending, 502: schemas.ErrorEnvelope})
def chat():
    """Send a message to the current (or given) conversation and wait a while for the reply."""
    user = require_user()
    body = parse_body(schemas.ChatIn, json_object())
    with services().sessions() as session:
        with session.begin():
            if body.conversation_id:
                conversation = own_conversation(session, user, body.conversation_id)
            else:
                conversation = _current_or_new(session, user, body.conversation_name)
            conversation_id = conversation.conversation_id
        job, send_now = submit_message(services(), session, user, conversation_id, body.user_input, None)
    if send_now:
        ctx().dispatch(job.id)
    done = wait_for_job(user, str(job.id), services().settings.chat_wait_seconds)
    ids = {"conversation_id": str(conversation_id), "job_id": done["id"]}
    if done["status"] == "succeeded":
        return {**ids, "response": done["reply"]["content"]}, 200
    if done["status"] in ("failed", "cancelled"):
        error = done["error"] or {"type": "cancelled", "message": "The reply was cancelled."}
        return {"error": error, **ids}, 502
    return {**ids, "job": done}, 202


@blueprint.get("/get_conversation", responses={200: schemas.SeedConversation})
def get_conversation(query: schemas.SeedConversationGetQuery):
    """Every message of a conversation."""
    return _seed_conversation(query)


@blueprint.post("/get_conversation", responses={200: schemas.SeedConversation})
def post_get_conversation(query: schemas.SeedConversationQuery):
    """Every message of a conversation (`conversation_id` in the query or a JSON body)."""
    return _seed_conversation(query)


def _seed_conversation(query: schemas.SeedConversationQuery | schemas.SeedConversationGetQuery):
    user = require_user()
    conversation_id = query.conversation_id
    if conversation_id is None and request.method == "POST":
        conversation_id = parse_body(schemas.SeedConversationBody, json_object()).conversation_id
    if not conversation_id:
        raise ApiError(400, "invalid_request", "conversation_id: required.")
    with services().sessions() as session:
        conversation = own_conversation(session, user, str(conversation_id))
        messages = read_all(services(), session, conversation)
        return {"conversation_id": str(conversation.conversation_id),
                "conversation_name": conversation.conversation_name,
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
