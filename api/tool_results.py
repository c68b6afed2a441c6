"""Client tools at the edge: a conversation's (or a message's) tool definitions checked
before they are stored, and POST /v1/jobs/{id}/tool_results, which answers a
requires_action job's calls and queues the continuation (shared/tool_results.py)."""
from __future__ import annotations

from flask import jsonify, make_response
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.orm import Session

from api import schemas
from api.context import ctx, require_user, services
from api.errors import ApiError
from api.service import own_job
from shared.jobs import job_to_dict
from shared.models import Conversation, Job
from shared.quotas import enforce_token_quota
from shared.tool_results import CANCELLED, ToolResultsRefused, answer_calls, error_results
from shared.server_tools import allowed
from shared.tools import ToolsRefused, check_tool_choice, check_tools

blueprint = APIBlueprint("tool_results", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="jobs")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        404: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})


def checked_tools(tools: list[schemas.ToolIn | schemas.ServerToolIn] | None, choice: schemas.ToolChoiceIn | None
                  ) -> dict:
    """{"tools", "tool_choice"} as stored, or a 400 naming what the API would refuse."""
    settings = services().settings
    try:
        stored = check_tools([t.model_dump(exclude_none=True) for t in tools] if tools is not None else None,
                             allowed(settings.server_tools_allowed), settings.llm_provider)
        return {"tools": stored,
                "tool_choice": check_tool_choice(choice.model_dump(exclude_none=True) if choice else None, stored)}
    except ToolsRefused as refused:
        raise ApiError(400, "invalid_request", str(refused)) from None


def set_conversation_tools(conversation: Conversation, body) -> None:
    """Create or PATCH: the fields sent replace the stored ones (a tool_choice is checked
    against the tools it goes with)."""
    sent = body.model_fields_set
    if not {"tools", "tool_choice"} & sent:
        return
    tools = body.tools if "tools" in sent else None
    if "tools" not in sent:  # only tool_choice: check it against the stored tools
        try:
            conversation.tool_choice = check_tool_choice(
                body.tool_choice.model_dump(exclude_none=True) if body.tool_choice else None, conversation.tools)
        except ToolsRefused as refused:
            raise ApiError(400, "invalid_request", str(refused)) from None
        return
    checked = checked_tools(tools, body.tool_choice if "tool_choice" in sent else None)
    conversation.tools = checked["tools"] or None
    if "tool_choice" in sent or not conversation.tools:
        conversation.tool_choice = checked["tool_choice"]
    elif conversation.tool_choice:  # new tools: the stored choice must still name one of them
        try:
            check_tool_choice(conversation.tool_choice, conversation.tools)
        except ToolsRefused as refused:
            raise ApiError(400, "invalid_request", f"{refused} Send a tool_choice with the new tools.") from None


def message_tools(body: schemas.MessageIn) -> dict | None:
    """A message's own tools, overriding its conversation's for it and its tool rounds."""
    if "tools" not in body.model_fields_set:
        if body.tool_choice is not None:
            raise ApiError(400, "invalid_request", "tool_choice: only with this message's tools; set a "
                           "conversation's tool_choice with PATCH /v1/conversations/{id}.")
        return None
    return checked_tools(body.tools or [], body.tool_choice)


def _answer(session: Session, job: Job, results: list[dict], idempotency_key: str | None):
    try:
        continuation, send_now = answer_calls(session, services().events, job, results, idempotency_key)
    except ToolResultsRefused as refused:
        raise ApiError(refused.status, refused.kind, refused.message) from None
    if send_now:
        ctx().dispatch(continuation.id)
    return continuation


def cancel_tool_calls(session: Session, job: Job) -> dict:
    """Cancel a requires_action job: its calls are answered with an error result, so the
    conversation stays valid, and Claude's reply to that comes as the continuation."""
    _answer(session, job, error_results(job, CANCELLED), None)
    session.refresh(job)
    return job_to_dict(job)


@blueprint.post("/<job_id>/tool_results", responses={202: schemas.JobEnvelope, 409: schemas.ErrorEnvelope})
def post_tool_results(path: schemas.JobPath, body: schemas.ToolResultsIn, header: schemas.IdempotencyHeader):
    """Answer every tool call of a requires_action job at once; the continuation (Claude's
    reply to the results) is queued as a new job of the conversation and returned."""
    user = require_user()
    enforce_token_quota(services(), user)  # the continuation is a model call like any message's
    results = [result.model_dump() for result in body.results]
    for result in results:  # the Messages API's own shape: text blocks, no Parley extras
        if isinstance(result["content"], list):
            result["content"] = [{"type": "text", "text": block["text"]} for block in result["content"]]
    with services().sessions() as session:
        continuation = _answer(session, own_job(session, user, path.job_id), results, header.idempotency_key)
        payload = job_to_dict(continuation)
    response = make_response(jsonify(job=payload), 202)
    response.headers["Location"] = f"/v1/jobs/{payload['id']}"
    return response
