"""The chat page: static files served by the API itself, no build step.

`/` is the page, `/web/<file>` its scripts and styles. Both are public (the page
asks for a key and sends it on every API call from the tab's session storage).
Every response carries a strict Content-Security-Policy: scripts only from this
origin and never inline, no HTML parsing of strings (Trusted Types with no policy),
no framing, so a reply that smuggles markup has nothing to run with.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from api.errors import not_found

STATIC = Path(__file__).parent / "static"
# Only these files are served; anything else under /web/ is a 404 envelope.
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
FILES = {p.name: TYPES[p.suffix] for p in STATIC.iterdir() if p.suffix in TYPES}

CSP = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    "require-trusted-types-for 'script'", "trusted-types 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

blueprint = Blueprint("web", __name__)


@blueprint.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Revalidate every time (ETag): a new release is picked up at once, unchanged files cost a 304.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/")
def page():
    return send_from_directory(STATIC, "index.html", mimetype="text/html")


@blueprint.get("/web/<path:filename>")
def asset(filename: str):
    if filename not in FILES:
        raise not_found("file")
    return send_from_directory(STATIC, filename, mimetype=FILES[filename])
