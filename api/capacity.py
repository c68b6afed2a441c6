"""How many connections an API process holds at once, and whether its file-descriptor
limit allows that: every open stream, long-poll or keep-alive connection is one socket.
"""
from __future__ import annotations

import os
import resource
import sys

import redis

DEFAULT_CONNECTIONS = 10_000  # per API process: 10,000 open streams on one process with room for requests
# Descriptors a process uses besides its clients: the listening socket, PostgreSQL and
# Redis pools, log and metrics files, the interpreter's own.
HEADROOM = 200


def connections_setting() -> int:
    value = os.environ.get("API_CONNECTIONS", str(DEFAULT_CONNECTIONS)).strip()
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        print(f"API_CONNECTIONS: must be a whole number from 1 to 1000000, not {value!r}.", file=sys.stderr)
        sys.exit(2)
    return int(value)


def fit_fd_limit(connections: int) -> int:
    """Raise the soft descriptor limit towards the hard one if `connections` needs it; the
    connections the limit then holds (one line on stderr when that is fewer)."""
    need = connections + HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return connections
    raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (ValueError, OSError):
        pass
    if soft >= need:
        return connections
    fits = max(soft - HEADROOM, 1)
    print(f"API: the file-descriptor limit ({soft}, hard {hard}) holds {fits} connections per process, "
          f"not API_CONNECTIONS={connections}: serving at most {fits} open streams and requests per process; "
          f"raise it (ulimit -n {need}; docker: --ulimit nofile={need}; systemd: LimitNOFILE={need}) "
          f"or lower API_CONNECTIONS.", file=sys.stderr, flush=True)
    return fits


REDIS_CONNECTIONS = 32  # per API process and pool (the app's, the limiter's); every request and wait shares them


def share_redis_connections(client: redis.Redis, most: int = REDIS_CONNECTIONS) -> None:
    """Requests and woken streams queue for one of `most` pooled connections, instead of
    each opening one of its own when thousands wake at once (a growing pool never
    shrinks: it would keep thousands of idle connections to Redis)."""
    old = client.connection_pool
    client.connection_pool = redis.BlockingConnectionPool(
        connection_class=old.connection_class, max_connections=most, timeout=10, **old.connection_kwargs)
    old.disconnect()
