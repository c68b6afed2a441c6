"""shared/green.py: under gevent's patches, a psycopg query that waits on PostgreSQL
waits on the hub, so every other greenlet of the process runs meanwhile."""
from __future__ import annotations

import subprocess
import sys

from shared.config import ROOT

# In a fresh process: gevent must patch before psycopg is imported. The waiter blocks on
# an advisory lock the holder has; only if that wait lets the hub run can this greenlet
# see it waiting and release the lock. A wait that held the process (psycopg's C wait)
# ends in the waiter's statement timeout instead, and the script fails.
SCRIPT = """
from gevent import monkey
monkey.patch_all()
import sys
import gevent
import psycopg
from psycopg import waiting
from shared import green

assert green.install() and waiting.wait is green.wait
url = sys.argv[1]
holder, waiter = psycopg.connect(url, autocommit=True), psycopg.connect(url, autocommit=True)
waiter.execute("SET statement_timeout = '10s'")
holder.execute("SELECT pg_advisory_lock(4242)")
blocked = gevent.spawn(lambda: waiter.execute("SELECT pg_advisory_lock(4242), 'got it'").fetchone()[1])
pid = waiter.info.backend_pid
while not blocked.dead and not holder.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone()[0]:
    gevent.sleep(0.01)
holder.execute("SELECT pg_advisory_unlock(4242)")
print(blocked.get(timeout=10))
"""


def test_a_waiting_query_lets_other_greenlets_run(stack):
    url = stack.settings.require("database_url")
    done = subprocess.run([sys.executable, "-c", SCRIPT, url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "got it"


def test_nothing_changes_without_gevent_patches():
    done = subprocess.run([sys.executable, "-c", "from shared import green; from psycopg import waiting; "
                           "print(green.install(), waiting.wait is green.wait)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False False", done.stderr[-2000:]
