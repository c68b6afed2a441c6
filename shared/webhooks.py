"""Webhook pieces the API and the worker share: the signature, the secret, URL and address checks."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
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


# Ranges that carry an IPv4 address inside an IPv6 one: IPv4-mapped, IPv4-compatible,
# NAT64 (well-known and local-use prefixes), 6to4 and Teredo. The packet really goes to the
# embedded IPv4 (or a translator picks one), so the wrapper is refused outright.
_EMBEDS_IPV4 = tuple(map(ipaddress.ip_network, (
    "::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")))
# Not for hosts on the public internet, and not all of them caught by `is_global` on
# every Python version: IETF protocol assignments, the 6to4 relay, benchmarking,
# multicast, the reserved block and broadcast, IPv6 multicast.
_NOT_PUBLIC = tuple(map(ipaddress.ip_network, (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "ff00::/8")))


def address_problem(address: str) -> str | None:
    """Why a callback must not connect to `address` (an IP as resolved), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if ip.version == 6 and any(ip in network for network in _EMBEDS_IPV4):
        return f"{ip} wraps an IPv4 address (IPv4-mapped, NAT64, 6to4 or Teredo)"
    if not ip.is_global or ip.is_multicast or ip.is_reserved or any(ip in network for network in _NOT_PUBLIC):
        return f"{ip} is not a public address"
    return None


def refused_addresses(host: str, addresses: list[str]) -> str | None:
    """Why `host`, resolved to `addresses`, must not be called, or None: every one must be public."""
    if not addresses:
        return f"{host!r} resolves to no address"
    for address in addresses:
        if problem := address_problem(address):
            return f"{host!r} resolves to a non-public address: {problem}"
    return None
