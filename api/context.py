"""Per-app dependencies and the authenticated caller, reachable from any view."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import Celery
from flask import current_app, g, request

from api.errors import ApiError
from shared.bootstrap import Services
from shared.models import User
from shared.tasks import REPLY_TASK
from shared.users import authenticate

log = logging.getLogger("parley.api")


@dataclass
class ApiContext:
    services: Services
    celery: Celery

    def dispatch(self, job_id: object) -> None:
        """Send a turn to the workers. The job row is already committed, so a
        failed send leaves it queued for the sweeper rather than losing it."""
        try:
            self.celery.send_task(REPLY_TASK, args=[str(job_id)])
        except Exception as error:
            log.error("could not enqueue job %s: %s", job_id, error)


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
    with services().sessions() as session:
        user = authenticate(session, key.strip())
    if user is None:
        raise ApiError(401, "unauthorized", "Invalid or revoked API key.")
    g.user = user
    return user
