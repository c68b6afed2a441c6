"""The seed's endpoints: lenient, as its users' curl commands were."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.base import MessageText, Request, Strict
from api.schemas.jobs import Job

class ChatIn(Strict):
    user_input: MessageText
    conversation_name: str | None = None
    conversation_id: str | None = None


class ChatOut(BaseModel):
    conversation_id: str
    job_id: str
    response: str


class ChatPending(BaseModel):
    conversation_id: str
    job_id: str
    job: Job


class NewChatOut(BaseModel):
    conversation_id: str


class SeedConversationQuery(Request):
    conversation_id: str | None = Field(None, min_length=1, description="here, or in the JSON body")


class SeedConversationGetQuery(Request):
    conversation_id: str = Field(min_length=1)


class NewChatIn(Strict):
    conversation_name: str | None = None


class SeedConversationBody(Strict):
    conversation_id: str = Field(min_length=1)


class SeedMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class SeedConversation(BaseModel):
    conversation_id: str
    conversation_name: str | None
    messages: list[SeedMessage]
