"""The HTTP API: a Flask app factory. Imports shared/, never worker/."""
from __future__ import annotations

from flask_openapi3 import Info, OpenAPI

from api.context import ApiContext, require_key_by_default
from api.errors import register_error_handlers, validation_error_response
from api.limits import document_limits, init_rate_limits
from api.observability import init_observability
from api.strict_json import StrictJSONProvider
from shared.bootstrap import Services, bootstrap
from shared.config import Settings, load_settings
from shared.tasks import make_celery

BEARER = {"bearer": {"type": "http", "scheme": "bearer"}}


def create_app(settings: Settings | None = None, services: Services | None = None) -> OpenAPI:
    settings = settings or load_settings()
    services = services or bootstrap(settings)
    app = OpenAPI(
        __name__, info=Info(title="Parley", version="1.0.0",
                            description="Queued chat turns with Claude."),
        security_schemes=BEARER, validation_error_status=400,
        validation_error_callback=validation_error_response, doc_ui=False,
        static_folder=None,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False
    app.extensions["parley"] = ApiContext(services, make_celery(settings, "parley-api"))
    register_error_handlers(app)
    init_observability(app)  # first: request id, metrics and the access line for every request
    init_rate_limits(app, settings)  # before authentication: a flood of bad keys is counted too
    app.before_request(require_key_by_default)

    from api import conversations, files, fork_routes, health, jobs, seed, tool_results, usage, webhooks

    app.register_api(health.blueprint)
    app.register_api(conversations.blueprint)
    app.register_api(conversations.models_blueprint)
    app.register_api(fork_routes.blueprint)
    app.register_api(jobs.blueprint)
    app.register_api(tool_results.blueprint)
    app.register_api(files.blueprint)
    app.register_api(seed.blueprint)
    app.register_api(webhooks.blueprint)
    app.register_api(usage.blueprint)
    from api import web

    app.register_blueprint(web.blueprint)  # the chat page at /, not part of the OpenAPI document
    app.add_url_rule("/openapi.json", "openapi", lambda: document_limits(app.api_doc))
    return app
