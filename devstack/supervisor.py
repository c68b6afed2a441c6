"""`make run`'s supervisor: honcho's Manager, with each process writing to the terminal itself.

honcho starts the processes, stops them all when one stops or on Ctrl-C, and prints
when each starts and stops. By default it also relays every line a process prints: a
relay process per child reads it, sends it through a multiprocessing queue, and the
manager prefixes and prints it. At saturation (scenario 4's load against `make run`,
three lines a turn: two access lines and Celery's task line) that relaying cost ~1.5 ms
of CPU a turn, more than Flower and the webhook worker together. Here each process
inherits the terminal instead: a line is one `write` of its own (lines under 4 KB are
never interleaved), a valid JSON line, so `make run | jq` works, and it says which
process wrote it in `process` (PROCESS_NAME, set here to the name honcho prints).
"""
from __future__ import annotations

import signal

from honcho.manager import Manager
from honcho.process import Process


class DirectOutput(Process):
    """A honcho process whose output goes where the supervisor's goes, not through honcho."""

    def run(self, events=None, ignore_signals=False):
        self._events = events
        self._child = self._child_ctor(self.cmd, env=self.env, cwd=self.cwd, stdout=None, stderr=None)
        self._send_message({"pid": self._child.pid}, type="start")
        if ignore_signals:  # as honcho's: the manager stops the child, not the terminal's Ctrl-C
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._child.wait()
        self._send_message({"returncode": self._child.returncode}, type="stop")


class Supervisor(Manager):
    def __init__(self) -> None:
        super().__init__()
        self._process_ctor = DirectOutput

    def add_process(self, name, cmd, quiet=False, env=None, cwd=None):
        return super().add_process(name, cmd, quiet=quiet, env={**(env or {}), "PROCESS_NAME": name}, cwd=cwd)
