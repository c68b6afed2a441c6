"""The caller behind a bearer key, for every request: one prepared query on a pooled
connection, outside a transaction (one round trip: shared/db.first_row).

Same rule as shared.users.authenticate (a live key, looked up by its SHA-256), at
about half its CPU. Nothing is cached, so a revoked key stops working on the next
request.
"""
from __future__ import annotations

import hmac

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from shared.db import first_row
from shared.models import ApiKey, User
from shared.users import KEY_PREFIX, hash_key

_KEY_OWNER = (
    select(User.id, User.name, User.created_at, ApiKey.key_hash)
    .join(ApiKey, ApiKey.user_id == User.id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


def key_owner(engine: Engine, key: str) -> User | None:
    """The user owning a live key, as a detached `User` to read (never to add to a session)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    row = first_row(engine, _KEY_OWNER, {"key_hash": digest})
    # The lookup matches hashes, so its timing tells nothing about a stored key;
    # the constant-time check keeps that true whatever the query becomes.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return User(id=row.id, name=row.name, created_at=row.created_at)
