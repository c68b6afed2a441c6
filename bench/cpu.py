"""CPU seconds spent by each part of the stack over a window, and by everything else on the machine."""
from __future__ import annotations

import psutil


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.NoSuchProcess:
        return 0.0


def _idle(times) -> float:
    return times.idle + getattr(times, "iowait", 0.0)


def _busy(times) -> float:
    # guest time is already inside user time
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuWindow:
    """`start()` then `stop()`; `seconds` maps each role (and `other`, `idle`) to CPU seconds."""

    def __init__(self, roles):
        self.roles = roles  # a callable returning {role: [psutil.Process]}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {role: {p.pid: _cpu(p) for p in processes} for role, processes in self.roles().items()}

    def start(self) -> None:
        self.machine = psutil.cpu_times()
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after, machine = self._sample(), psutil.cpu_times()
        seconds = {role: sum(cpu - self.before.get(role, {}).get(pid, 0.0) for pid, cpu in pids.items())
                   for role, pids in after.items()}
        idle = _idle(machine) - _idle(self.machine)
        busy = _busy(machine) - _busy(self.machine)
        seconds["other (not this bench)"] = max(0.0, busy - sum(seconds.values()))
        seconds["idle"] = idle
        return seconds
