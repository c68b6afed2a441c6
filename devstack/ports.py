"""The ports `make run` will listen on, checked before it starts anything: a taken port
is one line naming the setting to change, not a traceback from a process that died
after everything else had started. Also the one way any stack (tests, bench, soak) picks
a free port for a service of its own."""
from __future__ import annotations

import errno
import socket

from shared.config import Settings


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a service about to start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def planned_ports(settings: Settings, workers: int) -> list[tuple[str, str, int]]:
    """(setting, address, port) for each listening socket, as each process binds it."""
    ports = [("PORT", "127.0.0.1", settings.port), ("FLOWER_PORT", "127.0.0.1", settings.flower_port)]
    if settings.worker_metrics_port:
        # Workers 1..N, then the webhook worker; prometheus_client binds all interfaces.
        ports += [("WORKER_METRICS_PORT", "0.0.0.0", settings.worker_metrics_port + n) for n in range(workers + 1)]
    return ports


def in_use(address: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the servers do: a port left in TIME_WAIT by a previous run is free to bind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_problem(settings: Settings, workers: int) -> str | None:
    """The first planned port that cannot be used, as a config error message; None if all can."""
    seen: dict[int, str] = {}
    for setting, address, port in planned_ports(settings, workers):
        if port > 65535:
            return f"{setting}: {port} is past 65535 with {workers} workers; set a lower {setting}"
        if port in seen:
            return f"{setting}: {port} is also {seen[port]}'s port; give them different ports"
        seen[port] = setting
        if in_use(address, port):
            return (f"{setting}: {address}:{port} is in use by another program; "
                    f"set {setting} to a free port (e.g. {setting}={port + 1} make run)")
    return None
