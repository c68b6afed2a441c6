"""Per-app dependencies and the authenticated caller, reachable from any view."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from celery import Celery
from flask import current_app, g, request

from api.auth import key_owner
from api.errors import ApiError
from api.waits import JobEndWaits
from shared.bootstrap import Services
from shared.models import User
from shared.logs import bind_context, context_value
from shared.catalog import ModelCatalog
from shared.tasks import Dispatcher

log = logging.getLogger("parley.api")

# Routes anyone may call; every other route needs a key (see `require_key_by_default`).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics",
                          "/", "/web/<path:filename>"})  # the chat page (api/web)


@dataclass
class ApiContext:
    services: Services
    celery: Celery
    waits: JobEndWaits = field(init=False)  # long-polls share one subscription
    catalog: ModelCatalog = field(init=False)  # the configured models' lifecycles, for GET /v1/models

    def __post_init__(self) -> None:
        self.waits = JobEndWaits(self.services.events)
        self.catalog = ModelCatalog(self.services.settings)

    def dispatch(self, job_id: object) -> None:
        """Send a turn to the workers. The job row is already committed, so a
        failed send leaves it queued for the sweeper rather than losing it."""
        self.dispatcher.turn(job_id)

    @property
    def dispatcher(self) -> Dispatcher:
        """Sends tasks with the current request's id, for the worker's logs."""
        return Dispatcher(self.celery, request_id=partial(context_value, "request_id"))


def ctx() -> ApiContext:
    return current_app.extensions["parley"]


def services() -> Services:
    return ctx().services


def require_user() -> User:
    """The user behind the request's bearer key, or 401."""
    if "user" in g:
        return g.user
    values = request.headers.getlist("Authorization")
    if len(values) != 1:
        raise ApiError(401, "unauthorized", "Send exactly one `Authorization: Bearer <key>` header.")
    scheme, _, key = values[0].partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "Send `Authorization: Bearer <key>`.")
    user = key_owner(services().engine, key.strip())
    if user is None:
        raise ApiError(401, "unauthorized", "Invalid or revoked API key.")
    g.user = user
    bind_context(user_id=user.id)
    return user


def require_key_by_default() -> None:
    """before_request: a route not listed as public needs a key, checked before its body
    is parsed, so a new endpoint that forgets `require_user()` is still closed."""
    rule = request.url_rule
    if rule is None or rule.rule in PUBLIC_PATHS or request.method == "OPTIONS":
        return  # no route (404/405 follow), public, or Flask's automatic OPTIONS
    require_user()
