"""/v1/files: upload, list, read, download and delete attachments (api/file_service.py)."""
from __future__ import annotations

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.exceptions import RequestEntityTooLarge

from api import schemas
from api.context import require_user, services
from api.errors import ApiError
from api.file_service import clean_name, delete_file, file_to_dict, list_files, own_file, upload
from api.pages import check_limit
from shared.db import reading

blueprint = APIBlueprint("files", __name__, url_prefix="/v1/files", abp_tags=[Tag(name="files")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        503: schemas.ErrorEnvelope})
# Room for the multipart framing around the largest file allowed.
MULTIPART_SLACK = 64 * 1024
CONTENT_RESPONSE = {"description": "the file's bytes, as uploaded",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def _uploaded() -> tuple[bytes, str]:
    """The `file` part's bytes and name. Read here, not by a form model, so that this
    route alone takes bodies past MAX_REQUEST_BYTES, up to the largest file allowed."""
    limits = services().settings.upload_limits
    request.max_content_length = limits.largest + MULTIPART_SLACK
    try:
        part = request.files.get("file")
    except RequestEntityTooLarge:
        raise ApiError(413, "file_too_large", f"The upload is larger than any file accepted here: images up to "
                       f"{limits.image_bytes:,} bytes, PDFs {limits.pdf_bytes:,}, text {limits.text_bytes:,}."
                       ) from None
    if not request.mimetype == "multipart/form-data" or part is None:
        raise ApiError(400, "invalid_request", "Send the file as multipart/form-data in a part named `file` "
                       "(curl -F file=@report.pdf).")
    return part.read(), clean_name(part.filename)


@blueprint.post("", responses={201: schemas.FileOut, 413: schemas.ErrorEnvelope, 415: schemas.ErrorEnvelope})
def create():
    """Upload a file (multipart/form-data, part `file`): PNG, JPEG, GIF, WebP, PDF or UTF-8 text
    (plain, Markdown, CSV, JSON). Its type is judged from its bytes; a name that says another
    type, a corrupt image or PDF, or a file past its kind's limit is refused and nothing is kept."""
    user = require_user()
    data, name = _uploaded()
    with services().sessions() as session:
        return file_to_dict(upload(services(), session, user, data, name)), 201


@blueprint.get("", responses={200: schemas.FilePage})
def list_(query: schemas.ListQuery):
    """The caller's files, newest first."""
    user = require_user()
    check_limit(query.limit, services().settings.max_page_size)
    with reading(services().sessions) as session:
        rows, next_cursor = list_files(session, user, query.limit, query.cursor)
        return {"data": [file_to_dict(row) for row in rows], "next_cursor": next_cursor}


@blueprint.get("/<file_id>", responses={200: schemas.FileOut, 404: schemas.ErrorEnvelope})
def read(path: schemas.FilePath):
    """A file's facts: type, size, sha256, pixels or pages, token estimate."""
    user = require_user()
    with reading(services().sessions) as session:
        return file_to_dict(own_file(session, user, path.file_id))


@blueprint.get("/<file_id>/content", responses={200: CONTENT_RESPONSE, 404: schemas.ErrorEnvelope})
def content(path: schemas.FilePath):
    """The file's bytes, with the media type judged at upload."""
    user = require_user()
    with reading(services().sessions) as session:
        row = own_file(session, user, path.file_id)
        key, media_type, name = row.storage_key, row.media_type, row.name
    data = services().store.get_bytes(key)
    if data is None:
        raise ApiError(404, "not_found", "The file's bytes are missing from storage.")
    quoted = name.replace("\\", "_").replace('"', "_")
    return Response(data, mimetype=media_type, headers={
        "Content-Disposition": f'attachment; filename="{quoted}"', "X-Content-Type-Options": "nosniff"})


@blueprint.delete("/<file_id>", responses={204: None, 404: schemas.ErrorEnvelope, 409: schemas.ErrorEnvelope})
def remove(path: schemas.FilePath, query: schemas.FileDeleteQuery):
    """Delete a file: 409 while a conversation's context window still sends it, unless force=true."""
    user = require_user()
    with services().sessions() as session:
        delete_file(services(), session, own_file(session, user, path.file_id), query.force)
    return "", 204
