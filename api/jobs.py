"""/v1/jobs: a queued turn's state, with long-polling."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api import schemas
from api.context import require_user, services
from api.errors import ApiError
from api.service import is_final, own_job
from shared.jobs import job_to_dict
from shared.models import User

blueprint = APIBlueprint("jobs", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="jobs")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        404: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})


def wait_for_job(user: User, job_id: str, wait: float) -> dict:
    """The job, after holding the request until it finishes or `wait` seconds pass."""
    def current() -> dict:
        with services().sessions() as session:
            return job_to_dict(own_job(session, user, job_id))

    job = current()
    if wait > 0 and not is_final(job["status"]):
        services().notifier.wait_finished(job["id"], wait, lambda: is_final(current()["status"]))
        job = current()
    return job


@blueprint.get("/<job_id>", responses={200: schemas.Job})
def read(path: schemas.JobPath, query: schemas.WaitQuery):
    """A job; `?wait=S` answers the moment it finishes, or after S seconds."""
    user = require_user()
    limit = services().settings.max_wait_seconds
    if query.wait > limit:
        raise ApiError(400, "invalid_request", f"wait: at most {limit:g} seconds.")
    return wait_for_job(user, path.job_id, query.wait)
