"""Images and documents in a request, as the offline model takes them: checked as the API
checks them (the bytes must be the media type they claim, a Files API id must exist and
be asked for with its beta header), counted by the estimate Parley itself uses
(shared/media.py), and described at the end of the reply ("attachments: ...") so a test
sees exactly which blocks reached the model. Also the Files API's upload route."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

from offline_model.messages import BadRequest
from shared.media import Limits, MediaRejected, inspect, text_tokens

FILES_API_BETA = "files-api-2025-04-14"
# The API's own caps (vision guide, PDF support guide): what the offline model refuses past.
LIMITS = Limits(image_bytes=5 * 1024 * 1024, image_side_px=8000, pdf_bytes=32 * 1024 * 1024, pdf_pages=100,
                text_bytes=32 * 1024 * 1024)
_CONVERSE_NAME = re.compile(r"^[A-Za-z0-9\-()\[\]]+( [A-Za-z0-9\-()\[\]]+)*$")
_CONVERSE_TEXT_FORMATS = ("txt", "csv", "md", "html")


@dataclass(frozen=True)
class Received:
    kind: str  # image or document
    media_type: str
    size_bytes: int
    tokens: int
    detail: str  # "40x30 px", "2 pages", "" for text
    digest: str  # of the bytes: a prompt-cache entry covers exactly these

    def describe(self) -> str:
        size = f"{self.detail}, " if self.detail else ""
        return f"{self.kind} {self.media_type} ({size}{self.size_bytes} bytes, ~{self.tokens} tokens)"


def is_media(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") in ("image", "document")


def read_media(block: dict, files: dict, beta: str) -> Received:
    """What an image or document block holds; BadRequest for one the API would refuse."""
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind, source_type = block["type"], source.get("type")
    if source_type == "base64":
        try:
            data = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{kind}.source.data: invalid base64 data") from None
        claimed = source.get("media_type")
    elif source_type == "text" and kind == "document":
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise BadRequest("document.source: a text source takes media_type text/plain and string data")
        data, claimed = source["data"].encode("utf-8"), "text/plain"
    elif source_type == "file":
        if FILES_API_BETA not in beta:
            raise BadRequest(f"{kind}.source: file sources require the anthropic-beta header {FILES_API_BETA}")
        stored = files.get(source.get("file_id"))
        if stored is None:
            raise BadRequest(f"{kind}.source.file_id: file {source.get('file_id')!r} not found")
        data, claimed = stored["data"], stored["media_type"]
    else:
        raise BadRequest(f"{kind}.source.type: unsupported source {source_type!r}")
    return _received(kind, data, claimed)


def _received(kind: str, data: bytes, claimed: str | None) -> Received:
    digest = hashlib.sha256(data).hexdigest()[:16]
    if claimed == "text/plain" and kind == "document":
        text = data.decode("utf-8", errors="replace")
        return Received(kind, "text/plain", len(data), text_tokens(text), "", digest)
    try:
        facts = inspect(data, None, LIMITS)
    except MediaRejected as rejected:
        raise BadRequest(f"{kind}: {rejected.message}") from None
    if facts.media_type != claimed or facts.kind != kind:
        raise BadRequest(f"{kind}: the data is {facts.media_type}, not the {claimed} its media_type says")
    detail = f"{facts.width}x{facts.height} px" if facts.kind == "image" else f"{facts.pages} pages"
    return Received(kind, facts.media_type, len(data), facts.token_estimate, detail, digest)


def received_in(messages: list[dict], files: dict, beta: str) -> list[list[Received]]:
    """Each message's images and documents, in order."""
    return [[read_media(b, files, beta) for b in m["content"] if is_media(b)] if isinstance(m["content"], list)
            else [] for m in messages]


def attachment_note(received: list[list[Received]]) -> str:
    """What the reply says it received with the newest message; empty without attachments."""
    newest = received[-1] if received else []
    return f"; attachments: {'; '.join(r.describe() for r in newest)}" if newest else ""


def media_key(received: list[list[Received]]):
    """For the prompt cache: a media block's identity and tokens, in request order."""
    queue = [r for per_message in received for r in per_message]

    def take(item: dict) -> tuple[str, int] | None:
        if not (is_media(item) or "image" in item or "document" in item) or not queue:
            return None
        found = queue.pop(0)
        return f"{found.kind}:{found.digest}", found.tokens
    return take


def from_converse_media(block: dict) -> dict | None:
    """A Converse image or document block in the Messages API's shape (bytes arrive
    base64-encoded in the JSON body); None for any other block."""
    if isinstance(block.get("image"), dict):
        image = block["image"]
        return {"type": "image", "source": {"type": "base64", "media_type": f"image/{image.get('format')}",
                                            "data": (image.get("source") or {}).get("bytes", "")}}
    if not isinstance(block.get("document"), dict):
        return None
    document = block["document"]
    name, fmt = document.get("name") or "", document.get("format")
    if not _CONVERSE_NAME.match(name):
        raise BadRequest("The document name can only contain alphanumeric characters, whitespace characters, "
                         "hyphens, parentheses, and square brackets; no more than one whitespace in a row.")
    data = (document.get("source") or {}).get("bytes", "")
    if fmt == "pdf":
        return {"type": "document", "title": name,
                "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
    if fmt in _CONVERSE_TEXT_FORMATS:
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest("document.source.bytes: not UTF-8 text") from None
        return {"type": "document", "title": name, "source": {"type": "text", "media_type": "text/plain",
                                                              "data": text}}
    raise BadRequest(f"document.format: {fmt!r} is not supported here")


class FilesApiRoutes:
    """Mixed into the request handler: the Files API's upload (POST /v1/files) and the
    test-only GET /_files listing what was uploaded."""

    def _upload_file(self) -> None:
        if FILES_API_BETA not in (self.headers.get("anthropic-beta") or ""):
            raise BadRequest(f"the Files API requires the anthropic-beta header {FILES_API_BETA}")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        parts = [p for p in BytesParser(policy=HTTP).parsebytes(head + raw).iter_parts()
                 if p.get_param("name", header="content-disposition") == "file"]
        if not parts:
            raise BadRequest("file: a multipart part named file is required")
        part = parts[0]
        data, name, media_type = part.get_payload(decode=True) or b"", part.get_filename() or "unnamed", \
            part.get_content_type()
        file_id = f"file_offline_{uuid.uuid4().hex[:24]}"
        with self.server.lock:
            self.server.files[file_id] = {"data": data, "media_type": media_type, "filename": name}
        self._send_json(200, {"id": file_id, "type": "file", "filename": name, "mime_type": media_type,
                              "size_bytes": len(data), "created_at": "2026-01-01T00:00:00Z", "downloadable": False})

    def _list_files(self) -> None:
        with self.server.lock:
            listed = [{"id": k, "filename": v["filename"], "mime_type": v["media_type"], "size_bytes": len(v["data"])}
                      for k, v in self.server.files.items()]
        self._send_json(200, {"data": listed})
