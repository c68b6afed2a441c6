"""Request JSON that PostgreSQL and the log can store, or a 400.

PostgreSQL text and jsonb refuse NUL characters, UTF-8 cannot encode a lone
surrogate (`"\\ud800"` is valid JSON), and a deeply nested body overflows
Python's parser. Each would otherwise surface as a 500 far from the request.
"""
from __future__ import annotations

from flask.json.provider import DefaultJSONProvider

from api.errors import ApiError


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _check(value: object) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not _storable(item):
                raise ApiError(400, "invalid_request",
                               "body: text must not contain NUL characters or unpaired surrogates.")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


class StrictJSONProvider(DefaultJSONProvider):
    """Parses request bodies (`request.get_json`) and refuses what cannot be stored.

    Raises ApiError, not ValueError, so even `get_json(silent=True)` answers 400.
    """

    def loads(self, s: str | bytes, **kwargs):
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ApiError(400, "invalid_request", "body: JSON nested too deeply.") from None
        _check(value)
        return value
