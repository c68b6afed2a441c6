"""gunicorn settings for the API. gevent: an open stream or long-poll waits in a greenlet
(a few KB), not a thread, so one process holds thousands (API_CONNECTIONS).

Metrics: each gunicorn worker is its own process, so prometheus_client runs in
multiprocess mode. Its files live in PROMETHEUS_MULTIPROC_DIR (default
`$VAR_DIR/metrics-api`), which must be set before the app imports
prometheus_client and emptied at start so a previous run's counts are not summed in.
"""
import os

# gevent patches the standard library before anything imports it, here in the master:
# psycopg picks its cooperative wait function at import, and ssl, sockets and threads
# (redis-py, the limiter's storage, the log reader pool) must be the patched ones in
# every worker. API_WORKER_CLASS=gthread is the thread-per-request worker, for comparison.
WORKER_CLASS = os.environ.get("API_WORKER_CLASS", "gevent")
if WORKER_CLASS == "gevent":
    from gevent import monkey

    monkey.patch_all()
    from shared.green import install as green_waits

    green_waits()  # psycopg waits on the hub (shared/green.py)
from pathlib import Path

from gunicorn.glogging import Logger

from api.capacity import connections_setting, fit_fd_limit

from shared.catalog import require_current_models
from shared.config import load_settings
from shared.local_stack import require
from shared.logs import formatter  # gunicorn puts its working directory (the repo) on sys.path first

# Checked here, in the master, before any worker starts: a bad setting is one line and
# exit status 2, not a traceback from every worker that gunicorn restarts in a loop.
_settings = require(load_settings(), "database_url", "redis_url")
# Likewise a model that was retired or that the provider does not know (shared/catalog.py).
require_current_models(_settings)

ROOT = Path(__file__).resolve().parent.parent

workers = int(os.environ.get("API_PROCESSES", "2"))
# gevent: gunicorn's, closing idle keep-alive connections at once when told to stop.
worker_class = "api.gunicorn_worker.DrainingGeventWorker" if WORKER_CLASS == "gevent" else WORKER_CLASS
threads = int(os.environ.get("API_THREADS", "32"))  # gthread only
# gevent: connections per process (open streams, long-polls, keep-alive and requests),
# checked against the file-descriptor limit (raised to the hard limit if that is enough).
worker_connections = fit_fd_limit(connections_setting())
timeout = 120
graceful_timeout = 30
# Idle keep-alive connections are closed after this long. It must outlast the idle
# timeouts of whatever reuses them (load balancers: 60 s; clients' pools: 5-60 s), so the
# other side always closes first: a server that closes a connection at the moment a
# client reuses it turns that request into a reset (ReadError, or a proxy's 502). Idle
# connections wait in gthread's poller, not in a thread.
keepalive = 75
accesslog = None  # the app logs one JSON line per request, with its request id

METRICS_DIR = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                   or Path(os.environ.get("VAR_DIR") or ROOT / "var") / "metrics-api")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)  # the workers inherit it


class JsonLogger(Logger):
    """gunicorn's own lines ("Listening at", worker restarts) as JSON like the rest."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter(os.environ.get("LOG_FORMAT", "json").lower(), _settings.process_name))


logger_class = JsonLogger


def on_starting(server):
    # Only prometheus_client's own files: never a directory tree, whatever the setting says.
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The app and its libraries, loaded by now, live as long as the process: frozen out of
    # the garbage collector's way, a full collection with thousands of open streams scans
    # only what the streams hold (pauses there are what every request meanwhile waits).
    import gc

    gc.freeze()
