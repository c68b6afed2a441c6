"""/v1/conversations/{id}/fork, /forks, and /messages/{seq}/edit and /regenerate (api/forks.py)."""
from __future__ import annotations

from flask import jsonify, make_response
from flask_openapi3 import APIBlueprint, Tag

from api import schemas
from api.context import ctx, require_user, services
from api.conversations import conversation_to_dict
from api.errors import ApiError
from api.forks import fork, fork_turn, list_forks, resubmit
from api.pages import check_limit
from api.seed import json_object, parse_body
from api.service import own_conversation
from shared.db import reading
from shared.jobs import job_to_dict

blueprint = APIBlueprint("forks", __name__, url_prefix="/v1/conversations",
                         abp_tags=[Tag(name="conversations")], abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        404: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})
RESUBMIT_RESPONSES = {202: schemas.ForkedJob, 409: schemas.ErrorEnvelope, 413: schemas.ErrorEnvelope,
                      429: schemas.ErrorEnvelope}


def _check_name(name: str | None) -> None:
    limit = services().settings.max_name_chars
    if name is not None and len(name) > limit:
        raise ApiError(400, "invalid_request", f"name: longer than {limit} characters.")


@blueprint.post("/<conversation_id>/fork", responses={201: schemas.Conversation, 409: schemas.ErrorEnvelope})
def create_fork(path: schemas.ConversationPath, body: schemas.ForkIn):
    """A new conversation holding this one's messages 1..at_seq (whole turns); this one is unchanged."""
    user = require_user()
    _check_name(body.name)
    with services().sessions() as session:
        parent = own_conversation(session, user, path.conversation_id)
        child = fork(services(), session, user, parent, fork_turn(services(), session, parent, body.at_seq), body.name)
        session.commit()
        payload = conversation_to_dict(child)
    if child.log_copy_pending:
        ctx().dispatcher.fork_log(child.conversation_id)
    response = make_response(jsonify(payload), 201)
    response.headers["Location"] = f"/v1/conversations/{payload['id']}"
    return response


@blueprint.get("/<conversation_id>/forks", responses={200: schemas.ConversationPage})
def forks(path: schemas.ConversationPath, query: schemas.ListQuery):
    """The conversations forked from this one (edits and regenerations included), newest first."""
    user = require_user()
    check_limit(query.limit, services().settings.max_page_size)
    with reading(services().sessions) as session:
        parent = own_conversation(session, user, path.conversation_id)
        rows, next_cursor = list_forks(session, user, parent, query.limit, query.cursor)
        return {"data": [conversation_to_dict(c) for c in rows], "next_cursor": next_cursor}


def _resubmit(path: schemas.MessageSeqPath, content: str | None, name: str | None, callback_url: str | None,
              idempotency_key: str | None, attachments: list[str] | None = None):
    user = require_user()
    _check_name(name)
    with services().sessions() as session:
        parent = own_conversation(session, user, path.conversation_id)
        child, job, send_now = resubmit(services(), session, user, parent, path.seq, content, name,
                                        idempotency_key, callback_url, attachments)
        payload = {"conversation": conversation_to_dict(child), "job": job_to_dict(job)}
    if send_now:
        ctx().dispatch(job.id)
    if child.log_copy_pending:
        ctx().dispatcher.fork_log(child.conversation_id)
    response = make_response(jsonify(payload), 202)
    response.headers["Location"] = f"/v1/jobs/{payload['job']['id']}"
    return response


@blueprint.post("/<conversation_id>/messages/<seq>/edit", responses=RESUBMIT_RESPONSES)
def edit(path: schemas.MessageSeqPath, body: schemas.EditIn, header: schemas.IdempotencyHeader):
    """Edit the user message at seq: a fork holding the turns before it, with `content`
    submitted in its place. The original conversation is unchanged."""
    return _resubmit(path, body.content, body.name, body.callback_url, header.idempotency_key, body.attachments)


@blueprint.post("/<conversation_id>/messages/<seq>/regenerate", responses=RESUBMIT_RESPONSES)
def regenerate(path: schemas.MessageSeqPath, header: schemas.IdempotencyHeader):
    """Answer turn seq again (seq: its user message or its reply): a fork holding the turns
    before it, with the same user message submitted. The original conversation is unchanged."""
    body = parse_body(schemas.RegenerateIn, json_object())  # optional, so parsed here (api/openapi.py documents it)
    return _resubmit(path, None, body.name, body.callback_url, header.idempotency_key)
