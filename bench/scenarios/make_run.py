"""11. `make run` itself at saturation: scenario 4's load against the stack users start.

Scenario 4 measures processes the bench starts the way `make run` does. This one runs
`python -m devstack` (what `make run` runs) with WORKERS=2 in a folder of its own, its
embedded PostgreSQL and Valkey, its offline model, its Flower, its supervisor and its
output (to a file here, a terminal there), and puts the same closed-loop load on it;
then the CPU a turn of every process it started, the supervisor included.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.client import AsyncApi
from bench.cpu import CpuWindow, describe, per_turn
from bench.report import Result, brief
from bench.scenarios.throughput import closed_loop
from devstack.environment import SERVICE_VARS, stack_env
from devstack.ports import free_port
from devstack.processes import DEFAULT_WORKERS, answers
from shared.config import ROOT, Settings
from shared.db import make_engine, make_sessions, unit_of_work
from shared.users import get_or_create_user, issue_key

NEEDS_STACK = False  # it starts `make run`'s stack, not the bench's
WORKERS = DEFAULT_WORKERS  # as `make run` starts them, and scenario 4
# By the command line of each process `make run` starts (its supervisor is `-m devstack`:
# the main process and one honcho process per child).
ROLES = (("gunicorn", "api"), ("parley.turns", "worker"), ("parley.webhooks", "webhook worker"),
         ("flower", "flower"), ("-m devstack", "supervisor"), ("offline_model", "model"), ("valkey", "redis"))
PARLEY = ("api", "worker", "webhook worker", "flower", "supervisor")


class MakeRun:
    """`python -m devstack` in `folder`, its output in `folder/make-run.log`."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        # Nothing configured, as a newcomer's `make run`, but the limits a bench's load would trip.
        env = stack_env((*SERVICE_VARS, "BROKER_", "S3_", "API_", "WORKER", "VAR_DIR"), VAR_DIR=str(folder),
                        PORT=str(self.port), FLOWER_PORT=str(free_port()), WORKERS=str(WORKERS),
                        RATE_LIMIT_PER_MINUTE="1000000", MAX_JOBS_IN_FLIGHT="100000")
        self.log = folder / "make-run.log"
        folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make run exited ({self.process.returncode}); see {self.log}")
            # The API answers, and both turn workers and the webhook worker said they are up.
            if self.log.read_bytes().count(b" ready.") >= WORKERS + 1 and answers(self.url + "/healthz"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"make run did not start in {timeout:.0f} s; see {self.log}")

    def keys(self, count: int) -> list[str]:
        urls = json.loads((self.folder / "services.json").read_text())["urls"]
        engine = make_engine(Settings(database_url=urls["DATABASE_URL"]).sqlalchemy_url, pool_size=1)
        try:
            with unit_of_work(make_sessions(engine)) as session:
                return [issue_key(session, get_or_create_user(session, f"load-{n}")) for n in range(count)]
        finally:
            engine.dispose()

    def roles(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = {role: [] for _, role in ROLES}
        found["postgres"], found["bench"] = self._postgres(), [psutil.Process()]
        try:
            processes = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return found
        for process in processes:
            try:
                command = " ".join(process.cmdline())
            except psutil.Error:
                continue
            role = next((role for marker, role in ROLES if marker in command), None)
            if role and process.pid not in {p.pid for p in found["postgres"]}:
                found[role].append(process)
        return found

    def _postgres(self) -> list[psutil.Process]:
        try:
            postmaster = psutil.Process(int((self.folder / "postgres" / "postmaster.pid").read_text().split()[0]))
            return [postmaster, *postmaster.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C: the supervisor stops everything it started
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


async def load(url: str, keys: list[str], warmup: float, seconds: float,
               window: CpuWindow) -> tuple[list, dict[str, float]]:
    """Scenario 4's closed loop, one user each; the turns of the measured window and the
    CPU seconds by role over it."""
    apis = [AsyncApi(url, key, connections=4) for key in keys]
    cpu: dict[str, float] = {}
    try:
        conversations = []
        for api in apis:
            async with api.http.post("/v1/conversations", json={}) as response:
                conversations.append((await response.json())["id"])
        done = await closed_loop(apis, conversations, warmup, seconds, window.start, lambda: cpu.update(window.stop()))
        return done, cpu
    finally:
        for api in apis:
            await api.close()


def run(stack, quick: bool) -> Result:
    clients, warmup, seconds = (16, 2, 5) if quick else (48, 3, 20)
    make_run = MakeRun(stack.base / "make-run")
    try:
        make_run.wait_ready()
        window = CpuWindow(make_run.roles)
        done, cpu = asyncio.run(load(make_run.url, make_run.keys(clients), warmup, seconds, window))
    finally:
        make_run.stop()
    ms = per_turn(cpu, len(done))
    parley = sum(ms[role] for role in PARLEY)
    result = Result(11, "make run", config={"clients": clients, "seconds": seconds, "workers": WORKERS,
                                             "model_delay_ms": 0, "command": "python -m devstack"})
    result.check("turns per second", len(done) / seconds, ">=", 80, "/s")
    result.check("CPU per turn, Parley's processes", parley, "<=", 20, " ms")
    result.check("CPU per turn, PostgreSQL + Redis", ms["postgres"] + ms["redis"], "<=", 6, " ms")
    result.show("turn latency at saturation", brief([took for took, _ in done]))
    system = per_turn(window.system, len(done), (*PARLEY, "postgres", "redis"))
    result.show("CPU ms per turn", describe(ms))
    result.show("of it system time (the kernel), ms per turn", describe(system))
    result.figures.update(turns=len(done), cpu_ms_per_turn=ms, system_cpu_ms_per_turn=system,
                          parley_cpu_ms_per_turn=round(parley, 2))
    return result
