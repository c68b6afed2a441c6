"""WSGI entry for gunicorn: `gunicorn api.wsgi:app`."""
from api import create_app
from api.capacity import share_redis_connections
from shared.config import load_settings
from shared.local_stack import config_errors
from shared.logs import configure_logging

settings = load_settings()
configure_logging(settings.log_level, settings.log_format, settings.process_name)
with config_errors():  # under gunicorn, api/gunicorn_conf.py has checked already
    app = create_app(settings)
share_redis_connections(app.extensions["parley"].services.redis)
