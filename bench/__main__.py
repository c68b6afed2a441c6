"""`python -m bench [--scenario N ...] [--quick]`: start the stack, run the scenarios,
print one table and write bench/results.json."""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from bench.reference import reference_ms
from bench.report import Result, table, write
from bench.stack import BenchStack
from devstack.processes import DEFAULT_WORKERS
from shared.local_stack import config_errors

SCENARIOS = {1: "overhead", 2: "capacity", 3: "length", 4: "throughput", 5: "streaming", 6: "longpoll", 7: "cost",
             8: "history", 9: "open_streams", 10: "forks", 11: "make_run"}
# Scenarios sharing the default worker pool first, so workers restart as seldom as possible.
RUN_ORDER = (1, 6, 5, 3, 2, 4, 7, 8, 9, 10, 11)
RESULTS = Path(__file__).resolve().parent / "results.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scenario", type=int, action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable); default all")
    parser.add_argument("--quick", action="store_true", help="each scenario at a small size (a smoke run)")
    parser.add_argument("--api-processes", type=int, default=2, help="gunicorn processes (API_PROCESSES)")
    parser.add_argument("--api-threads", type=int, default=400, help="threads per gunicorn process (API_THREADS)")
    parser.add_argument("--worker-pool", choices=("gevent", "threads"),
                        help="turn workers' pool (WORKER_POOL); default the settings'")
    parser.add_argument("--worker-concurrency", type=int, help="WORKER_CONCURRENCY; default the settings'")
    parser.add_argument("--capacity-workers", type=int, default=DEFAULT_WORKERS,
                        help=f"scenario 2's worker processes (WORKERS); default {DEFAULT_WORKERS}, as `make run` "
                             "starts them")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the API and worker processes during scenarios 1 and 4")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, profiles)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    chosen = [n for n in RUN_ORDER if not args.scenario or n in args.scenario]
    base = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    run = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
           "machine": machine(), "api": {"processes": args.api_processes, "threads": args.api_threads},
           "folder": str(base)}
    print(f"bench: stack in {base} (API {args.api_processes} x {args.api_threads} threads)", flush=True)
    results: list[Result] = []
    started = time.monotonic()
    stack = BenchStack(base, args.api_processes, args.api_threads,
                       {"WORKER_POOL": args.worker_pool, "WORKER_CONCURRENCY": args.worker_concurrency})
    # A scenario with NEEDS_STACK = False brings its own offline model (7: cost).
    needs_stack = any(getattr(importlib.import_module(f"bench.scenarios.{SCENARIOS[n]}"), "NEEDS_STACK", True)
                      for n in chosen)
    try:
        if needs_stack:
            stack.start()
        stack.profile = args.profile
        stack.capacity_workers = args.capacity_workers
        for number in chosen:
            module = importlib.import_module(f"bench.scenarios.{SCENARIOS[number]}")
            began = time.monotonic()
            print(f"bench: scenario {number} ({SCENARIOS[number]})…", flush=True)
            if needs_stack:
                stack.problems()  # what earlier scenarios logged is theirs
            before = reference_ms()
            result = module.run(stack, args.quick)
            result.figures["seconds"] = round(time.monotonic() - began, 1)
            after = reference_ms()
            result.figures["reference_cpu_ms"] = [before, after]
            result.show("machine speed", f"a fixed Python workload (bench/reference.py) took {before:g} ms of CPU "
                        f"before, {after:g} after: compare runs by it")
            problems = stack.problems() if needs_stack else None
            if problems:
                result.figures["logged_problems"] = dict(problems.most_common(10))
                result.show("warnings logged", "; ".join(f"{n}x {text}" for text, n in problems.most_common(3)))
            results.append(result)
    finally:
        if needs_stack:
            stack.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    results.sort(key=lambda r: r.scenario)
    run["seconds"] = round(time.monotonic() - started, 1)
    run["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print(table(results))
    run["reference_cpu_ms_at_end"] = reference_ms()
    write(args.output, results, run)
    print(f"\n{sum(r.met for r in results)} of {len(results)} scenarios met their targets; "
          f"{run['seconds']:g} s; load average {run['load_average_at_end'][0]:g} on {os.cpu_count()} cores; "
          f"reference workload {run['reference_cpu_ms_at_end']:g} ms; written to {args.output}")
    return 0


if __name__ == "__main__":
    with config_errors():  # a bad setting: one line, exit status 2
        sys.exit(main())
