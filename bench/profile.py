"""py-spy on running processes, summarised: where each process spends the GIL.

`py-spy record --gil --format raw` writes one collapsed stack per line with its
sample count; only the thread holding the GIL is sampled, so the samples are the
process's Python CPU. Each sample goes to the innermost frame of a known package.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# py-spy names a frame "function (package/module.py:line)", paths relative to sys.path.
# The innermost frame that matches one of these markers decides a sample's package.
PACKAGES = (
    ("(sqlalchemy/", "SQLAlchemy"), ("(psycopg", "psycopg"), ("(redis/", "redis client"),
    ("(kombu/", "kombu (broker)"), ("(celery/", "celery"), ("(billiard/", "celery"),
    ("(anthropic/", "anthropic SDK"), ("(httpx", "httpx"), ("(httpcore", "httpx"), ("(h11/", "httpx"),
    ("(pydantic", "pydantic"), ("(typing_inspection/", "pydantic"), ("(structlog/", "logging"),
    ("(logging/", "logging"), ("(werkzeug/", "werkzeug"), ("(flask_openapi3/", "flask-openapi3"),
    ("(flask/", "flask"), ("(limits/", "limits (rate limit)"),
    ("(gunicorn/", "gunicorn"), ("(json/", "json"), ("(boto", "boto3"), ("(uuid.py", "uuid"),
    ("(api/", "parley api/"), ("(worker/", "parley worker/"), ("(shared/", "parley shared/"),
)
OURS = ("(api/", "(worker/", "(shared/")


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def _category(frame: str) -> str | None:
    for marker, name in PACKAGES:
        if marker in frame:
            return name
    return None


def summarise(raw: Path, top: int = 12) -> dict:
    by_package, by_leaf, ours, inclusive = Counter(), Counter(), Counter(), Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples, frames = int(count), _frames(stack)
        total += samples
        category = next((c for c in map(_category, reversed(frames)) if c), "other")
        by_package[category] += samples
        by_leaf[frames[-1]] += samples
        for name in {c for c in map(_category, frames) if c}:
            inclusive[name] += samples  # the package and everything it called
        for frame in {f for f in frames if any(marker in f for marker in OURS)}:
            ours[frame] += samples  # inclusive time of Parley's own functions
    def share(counter: Counter, count: int = top) -> list:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(count)] if total else []
    return {"samples": total, "by_package_pct": share(by_package), "inclusive_pct": share(inclusive, 20),
            "top_leaf_pct": share(by_leaf),
            "parley_functions_inclusive_pct": share(ours)}


class Profiler:
    """One `py-spy record` per process from `start` until `results`, which stops them and summarises."""

    def __init__(self, folder: Path):
        self.folder, self.runs = folder, {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    def start(self, name: str, pid: int, rate: int = 100) -> None:
        output = self.folder / f"{name}-{pid}.txt"
        self.runs[name] = (output, subprocess.Popen(
            [self.py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--gil", "--nonblocking",
             "--format", "raw", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def start_stack(self, stack, tag: str) -> None:
        """The API's gunicorn workers (not the arbiter) and every turn worker."""
        for n, process in enumerate(p for p in stack.api.tree() if p.pid != stack.api.process.pid):
            self.start(f"{tag}-api{n + 1}", process.pid)
        for n, worker in enumerate(stack.workers):
            self.start(f"{tag}-worker{n + 1}", worker.process.pid)

    def results(self) -> dict:
        summaries = {}
        for name, (output, process) in self.runs.items():
            process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            summaries[name] = summarise(output) if output.exists() else {"error": "py-spy wrote nothing"}
        self.runs = {}
        return summaries


class Measurement:
    """CPU seconds by process over a window and, with `--profile`, py-spy summaries of it:
    `start()`, `stop()`, then read `cpu` (of it, `system`: bench/cpu.py) and `profiles`."""

    def __init__(self, stack, tag: str):
        from bench.cpu import CpuWindow

        self.stack, self.tag = stack, tag
        self.window, self.cpu, self.system, self.profiles = CpuWindow(stack.roles), {}, {}, {}
        self.profiler = Profiler(stack.base / "profiles") if stack.profile else None

    def start(self) -> None:
        self.window.start()
        if self.profiler:
            self.profiler.start_stack(self.stack, self.tag)

    def stop(self) -> None:
        self.cpu.update(self.window.stop())
        self.system.update(self.window.system)
        if self.profiler:
            self.profiles.update(self.profiler.results())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile",
                                     description="Summarise raw py-spy stacks (collapsed format), as --profile does.")
    parser.add_argument("files", nargs="+", type=Path, help="raw stacks kept by `python -m bench --profile --keep`")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = parser.parse_args(argv)
    for path in args.files:
        if not path.is_file():
            parser.error(f"{path}: no such file")
        summary = summarise(path, top=args.top)
        print(f"== {path}: {summary['samples']} samples")
        for key in ("by_package_pct", "inclusive_pct", "parley_functions_inclusive_pct", "top_leaf_pct"):
            print(f"  {key}:")
            for name, pct in summary[key]:
                print(f"    {pct:5.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
