"""psycopg's waits on gevent's own event loop, in the processes gevent patches (the API
under gunicorn's gevent worker, turn workers on Celery's gevent pool).

psycopg sends a query, then waits for its socket through a wait function chosen at
import. Under gevent's patches it cannot use its C wait (which would block every
greenlet), so it takes `wait_poll` on the patched `select.poll`, which emulates poll
with a new watcher set, result object and timer every time a query waits (7 % of a
turn worker's CPU in a profile). Here each wait is one io watcher on
the hub, which is what gevent's own sockets do. Waits with a deadline (rare: psycopg
passes one only when a caller sets one) keep psycopg's function.
"""
from __future__ import annotations

from gevent import get_hub, monkey
from psycopg import waiting
from psycopg.waiting import Ready, Wait

_original_wait = waiting.wait


def install() -> bool:
    """Use the hub's waits if gevent has patched `select`; True if it did."""
    if not monkey.is_module_patched("select") or waiting.wait is wait:
        return waiting.wait is wait
    waiting.wait = wait
    return True


def wait(gen, fileno: int, interval: float = 0.0, timeout: float | None = None):
    """psycopg's WaitFunc: run `gen`, waiting on the hub whenever it asks for the socket.
    The interval (psycopg wakes that often to notice Ctrl-C) is not needed here: a signal
    reaches a greenlet through the hub."""
    if timeout is not None:
        return _original_wait(gen, fileno, interval=interval, timeout=timeout)
    hub = get_hub()
    io = hub.loop.io
    try:
        state = next(gen)
        while True:
            watcher = io(fileno, int(state))  # Wait.R = 1, W = 2, RW = 3: libev's READ, WRITE
            try:
                hub.wait(watcher)
            finally:
                watcher.close()
            # Woken for one of the events asked: for RW, report both; psycopg's generators
            # then read or flush without blocking, and a side that was not ready does nothing.
            state = gen.send(_READY[state])
    except StopIteration as done:
        return done.value


_READY = {Wait.R: Ready.R, Wait.W: Ready.W, Wait.RW: Ready.RW}
