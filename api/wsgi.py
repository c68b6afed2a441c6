"""WSGI entry for gunicorn: `gunicorn api.wsgi:app`."""
from api import create_app
from shared.config import load_settings
from shared.logs import configure_logging

settings = load_settings()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
