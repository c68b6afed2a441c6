"""Users and their API keys. Only a key's SHA-256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import ApiKey, User

KEY_PREFIX = "pk_"
PREFIX_CHARS = 10  # stored in the clear so listings can tell keys apart


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def get_or_create_user(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        user = User(id=uuid.uuid4(), name=name)
        session.add(user)
        session.flush()
    return user


def issue_key(session: Session, user: User) -> str:
    """Create a key for `user` and return it; it cannot be shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(id=uuid.uuid4(), user_id=user.id, key_hash=hash_key(key), prefix=key[:PREFIX_CHARS]))
    session.flush()
    return key


def authenticate(session: Session, key: str) -> User | None:
    """The user owning a live key. Lookup by hash: the stored value never meets the raw key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).first()
    # The lookup matches hashes, so its timing tells nothing about a stored key;
    # the constant-time check keeps that true whatever the query becomes.
    if row is None or not hmac.compare_digest(row.ApiKey.key_hash, hash_key(key)):
        return None
    return row.User


def list_keys(session: Session, user: User) -> list[ApiKey]:
    """A user's keys, oldest first, revoked ones included."""
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)
                                .order_by(ApiKey.created_at, ApiKey.id)))


def find_keys(session: Session, ref: str) -> list[ApiKey]:
    """Keys matching `ref`: a key id, a whole key, or a key's listed prefix."""
    try:
        return [key] if (key := session.get(ApiKey, uuid.UUID(ref))) else []
    except ValueError:
        pass
    if ref.startswith(KEY_PREFIX) and len(ref) > PREFIX_CHARS:
        return list(session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(ref))))
    return list(session.scalars(select(ApiKey).where(ApiKey.prefix == ref)))


def revoke_key(session: Session, key_id: uuid.UUID) -> bool:
    """Revoke a key; it stops working on the next request (nothing caches keys)."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = datetime.now(timezone.utc)
    return True
