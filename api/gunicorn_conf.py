"""gunicorn settings for the API. Threads: long-polls wait on Redis, not on the CPU."""
import os

workers = int(os.environ.get("API_PROCESSES", "2"))
worker_class = "gthread"
threads = int(os.environ.get("API_THREADS", "32"))
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = "-"
