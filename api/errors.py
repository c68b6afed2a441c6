"""The error envelope: every failure is `{"error": {"type", "message"}}` with a fitting status."""
from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify, make_response
from pydantic import ValidationError
from sqlalchemy import exc as sql_errors
from werkzeug.exceptions import HTTPException

from shared.refusals import Conflict, Invalid, NotFound, Refused, TooLarge, TooMany, UnsupportedType
from shared.storage import StorageUnavailable

log = logging.getLogger("parley.api")

_HTTP_TYPES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 413: "too_large", 415: "unsupported_media_type", 429: "rate_limited"}


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


def envelope(status: int, type_: str, message: str, headers: dict | None = None):
    response = make_response(jsonify(error={"type": type_, "message": message}), status)
    response.headers.update(headers or {})
    return response


# A service's refusals (shared/refusals.py) as HTTP: the one place that knows their statuses.
REFUSAL_STATUS = {Invalid: 400, NotFound: 404, Conflict: 409, TooLarge: 413, UnsupportedType: 415, TooMany: 429}


def refusal_status(error: Refused) -> int:
    return next(REFUSAL_STATUS[cls] for cls in type(error).__mro__ if cls in REFUSAL_STATUS)


def not_found(what: str = "resource") -> NotFound:
    return NotFound.of(what)


def validation_error_response(error: ValidationError):
    """flask-openapi3's hook: one readable line per problem, status 400."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return envelope(400, "invalid_request", "; ".join(problems))


_UNAVAILABLE = (sql_errors.OperationalError, sql_errors.InterfaceError, sql_errors.TimeoutError,
                redis.ConnectionError, redis.TimeoutError, StorageUnavailable)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return envelope(error.status, error.type, error.message, error.headers)

    @app.errorhandler(Refused)
    def _refused(error: Refused):
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
        return envelope(refusal_status(error), error.kind, error.message, headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.response is not None and error.response.is_json:  # validation, already an envelope
            return error.response
        status = error.code or 500
        message = "Request body too large." if status == 413 else (error.description or error.name)
        # 405 must say which methods the resource has (RFC 9110 §15.5.6); werkzeug puts them in Allow.
        allow = {k: v for k, v in error.get_headers() if k == "Allow"}
        return envelope(status, _HTTP_TYPES.get(status, "error"), message, allow)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, _UNAVAILABLE):
            log.warning("backing service unavailable: %s: %s", type(error).__name__, error)
            return envelope(503, "service_unavailable",
                            "A backing service is unavailable; try again shortly.", {"Retry-After": "5"})
        log.exception("unhandled error")
        return envelope(500, "internal", "Internal error.")
