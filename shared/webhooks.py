"""Webhook pieces the API and the worker share: the signature, the secret, URL checks."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from shared.models import User

MAX_URL_CHARS = 2048


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`Parley-Signature`: HMAC-SHA256 over `"{timestamp}." + body`, hex, prefixed `v1=`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def ensure_secret(session: Session, user_id: object, rotate: bool = False) -> str:
    """The user's signing secret, made on first use (or replaced when rotating)."""
    user = session.get(User, user_id, with_for_update={"key_share": True})
    if rotate or not user.webhook_secret:
        user.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    return user.webhook_secret


def url_problem(url: str) -> str | None:
    """What is wrong with a callback URL as written, or None."""
    if len(url) > MAX_URL_CHARS:
        return f"longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        return f"not a URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    return None


def blocked_address(url: str) -> str | None:
    """Why `url` must not be called (it resolves to a non-public address), or None."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        return f"cannot resolve {host!r}: {error}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return f"{host!r} resolves to a non-public address ({address})"
    return None
