"""What a service refuses, and why, without HTTP. Services raise these; the API maps each
class to a status in one table (api/errors.py) and puts `kind` in the error envelope's
`type`, so a message, a kind and a class are all a service says."""
from __future__ import annotations


class Refused(Exception):
    def __init__(self, kind: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.kind, self.message, self.retry_after = kind, message, retry_after  # seconds, when it will pass


class Invalid(Refused):
    """The request cannot be done as asked (a bad value, a cursor the API never made)."""


class NotFound(Refused):
    """No such thing, or not the caller's: the two look the same."""

    @classmethod
    def of(cls, what: str) -> "NotFound":
        return cls("not_found", f"No such {what}.")


class Conflict(Refused):
    """Not now, or not in this state (busy, already ended, still in use)."""


class TooLarge(Refused):
    """Past a size limit the message names."""


class UnsupportedType(Refused):
    """Content of a type the service does not take."""


class TooMany(Refused):
    """Past a count limit (jobs in flight, today's model tokens)."""
