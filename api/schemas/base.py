"""What every request and response shares: strict request models, the error envelope,
ids, paths, list and wait queries, health."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_REQUEST_SCHEMAS: dict[type, dict] = {}


class Request(BaseModel):
    """A request's body, query, path or header model. flask-openapi3 asks for its JSON
    schema on every request (0.3-0.4 ms each, measured); it never changes, so build it once."""

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _REQUEST_SCHEMAS:
            _REQUEST_SCHEMAS[cls] = super().model_json_schema()
        return _REQUEST_SCHEMAS[cls]


class Strict(Request):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def _has_text(value: str) -> str:
    # The Messages API refuses an empty or whitespace-only text block: refuse it here, before it is queued.
    if not value.strip():
        raise ValueError("must contain some text, not only whitespace")
    return value


# The schema states the rule (a non-whitespace character somewhere); _has_text enforces it with a plain message.
MessageText = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"\S"}), AfterValidator(_has_text)]


FileId = Annotated[str, Field(pattern=r"^file_[0-9a-f]{32}$", description="an id from POST /v1/files")]


class IdempotencyHeader(Request):
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", max_length=200, pattern=r"^[^\x00]*$")


class ConversationPath(Request):
    conversation_id: str


class JobPath(Request):
    job_id: str


class ListQuery(Strict):
    limit: int = Field(20, ge=1)
    cursor: str | None = None


class WaitQuery(Strict):
    wait: float = Field(0, ge=0)


class EventsQuery(Strict):
    after: int | None = Field(None, ge=0, le=10**15, description="resume after this event id")


class Health(BaseModel):
    status: str
    checks: dict[str, str] | None = None


# Text inside a tool's or a result's fields: the server refuses NUL anywhere in a body (api/strict_json.py).
ToolText = Annotated[str, Field(pattern=r"^[^\x00]*$")]
