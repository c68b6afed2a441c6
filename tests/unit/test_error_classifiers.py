"""Both providers' errors become the same kinds, with the same retry decision (no I/O:
the SDK's and botocore's own exception types, built here as the clients raise them)."""
from __future__ import annotations

import anthropic
import httpx2
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from shared.model.anthropic_api import classify_anthropic
from shared.model.bedrock import classify_bedrock

REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def api_error(status: int, kind: str, message: str, retry_after: str | None = None):
    headers = {"retry-after": retry_after} if retry_after else {}
    response = httpx2.Response(status, request=REQUEST, headers=headers)
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return anthropic.APIStatusError(message, response=response, body=body)


def client_error(code: str, message: str, status: int = 400):
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}}, "ConverseStream")


@pytest.mark.parametrize("error, kind, retryable", [
    (api_error(429, "rate_limit_error", "slow down", "7"), "rate_limited", True),
    (api_error(529, "overloaded_error", "Overloaded"), "overloaded", True),
    (api_error(500, "api_error", "boom"), "model_unavailable", True),
    (api_error(401, "authentication_error", "invalid x-api-key"), "provider_auth", False),
    (api_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000"), "context_too_long",
     False),
    (api_error(404, "not_found_error", "model: claude-sonnet-4-5"), "invalid_request", False),
    (api_error(400, "invalid_request_error", "messages.0: text content blocks must be non-empty"),
     "invalid_request", False),
    (anthropic.APITimeoutError(request=REQUEST), "model_timeout", True),
    (anthropic.APIConnectionError(request=REQUEST), "model_unavailable", True),
])
def test_messages_api_errors(error, kind, retryable):
    classified = classify_anthropic(anthropic, error)
    assert (classified.kind, classified.retryable) == (kind, retryable)
    if kind == "rate_limited":
        assert classified.retry_after == 7.0
    assert classified.model_gone == (error.__class__ is anthropic.APIStatusError and error.status_code == 404)


@pytest.mark.parametrize("error, kind, retryable", [
    (client_error("ThrottlingException", "Too many requests", 429), "rate_limited", True),
    (client_error("ServiceUnavailableException", "Model is overloaded.", 503), "overloaded", True),
    (client_error("InternalServerException", "boom", 500), "model_unavailable", True),
    (client_error("AccessDeniedException", "no access", 403), "provider_auth", False),
    (client_error("ValidationException", "Input is too long for requested model."), "context_too_long", False),
    (client_error("ResourceNotFoundException", "This model version has reached the end of its life.", 404),
     "invalid_request", False),
    (client_error("ValidationException", "Malformed input request."), "invalid_request", False),
    (ReadTimeoutError(endpoint_url="https://bedrock-runtime"), "model_timeout", True),
])
def test_bedrock_errors(error, kind, retryable):
    classified = classify_bedrock(error)
    assert (classified.kind, classified.retryable) == (kind, retryable)
    assert classified.model_gone == ("end of its life" in str(error))
