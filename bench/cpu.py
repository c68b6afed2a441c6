"""CPU seconds spent by each part of the stack over a window, and by everything else on the machine."""
from __future__ import annotations

import psutil


def _cpu(process: psutil.Process) -> tuple[float, float]:
    """(user + system, system) seconds."""
    try:
        times = process.cpu_times()
        return times.user + times.system, times.system
    except psutil.NoSuchProcess:
        return 0.0, 0.0


def _idle(times) -> float:
    return times.idle + getattr(times, "iowait", 0.0)


def _busy(times) -> float:
    # guest time is already inside user time
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuWindow:
    """`start()` then `stop()`, which returns each role's (and `other`'s, `idle`'s) CPU
    seconds; after it, `system` holds the part of each role's seconds spent in the kernel
    (system calls: socket I/O, futex waits for the GIL and locks, polls)."""

    def __init__(self, roles):
        self.roles = roles  # a callable returning {role: [psutil.Process]}

    def _sample(self) -> dict[str, dict[int, tuple[float, float]]]:
        return {role: {p.pid: _cpu(p) for p in processes} for role, processes in self.roles().items()}

    def start(self) -> None:
        self.machine = psutil.cpu_times()
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after, machine = self._sample(), psutil.cpu_times()

        def spent(role: str, part: int) -> float:
            return sum(cpu[part] - self.before.get(role, {}).get(pid, (0.0, 0.0))[part]
                       for pid, cpu in after[role].items())

        seconds = {role: spent(role, 0) for role in after}
        self.system = {role: spent(role, 1) for role in after}
        idle = _idle(machine) - _idle(self.machine)
        busy = _busy(machine) - _busy(self.machine)
        seconds["other (not this bench)"] = max(0.0, busy - sum(seconds.values()))
        seconds["idle"] = idle
        return seconds



def per_turn(seconds: dict[str, float], turns: int, roles=None) -> dict[str, float]:
    """CPU ms a turn by role (of `roles` only, when given), from a window's seconds."""
    return {role: round(seconds.get(role, 0.0) / max(1, turns) * 1000, 2) for role in (roles or seconds)}


def describe(ms: dict[str, float]) -> str:
    """`per_turn`'s figures as a report line."""
    return ", ".join(f"{role} {value:g}" for role, value in ms.items())
