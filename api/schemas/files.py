"""Attachments (api/files.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.base import Request, Strict

class FileOut(BaseModel):
    id: str = Field(description="file_…; attach it with POST .../messages {\"attachments\": [id]}")
    name: str
    media_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
                        "text/markdown", "text/csv", "application/json"] = Field(
        description="judged from the bytes, never from the client's content type")
    kind: Literal["image", "document"] = Field(description="the content block it becomes")
    size_bytes: int
    sha256: str
    width: int | None = Field(None, description="images: pixels")
    height: int | None = None
    pages: int | None = Field(None, description="PDFs")
    token_estimate: int = Field(description="what it adds to the context window until the model counts it")
    created_at: str


class FilePage(BaseModel):
    data: list[FileOut]
    next_cursor: str | None


class FilePath(Request):
    file_id: str


class FileDeleteQuery(Strict):
    force: bool = Field(False, description="delete even if a conversation's context window still sends it")
