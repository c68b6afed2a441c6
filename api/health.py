"""Liveness, readiness."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api import schemas
from api.context import services

blueprint = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@blueprint.get("/healthz", responses={200: schemas.Health})
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blueprint.get("/readyz", responses={200: schemas.Health, 503: schemas.Health})
def readyz():
    """PostgreSQL, Redis and the log store all answer."""
    probes = {
        "postgres": lambda: services().engine.connect().close(),
        "redis": lambda: services().redis.ping(),
        "storage": lambda: services().store.ping(),
    }
    checks = {}
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
