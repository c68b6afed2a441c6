"""Figures, targets and the printed table."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile, p in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def spread(values: list[float]) -> dict:
    """p50, p90, p99 and max in milliseconds, and the sample count."""
    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p90_ms": ms(percentile(values, 90)),
            "p99_ms": ms(percentile(values, 99)), "max_ms": ms(max(values)) if values else None}


def brief(values: list[float]) -> str:
    figures = spread(values)
    return f"p50 {figures['p50_ms']:g} / p99 {figures['p99_ms']:g} ms (n={figures['n']})"


def noise(values: list[float]) -> float:
    """Median absolute deviation over the median: how much a run wobbled."""
    middle = statistics.median(values)
    return round(statistics.median(abs(v - middle) for v in values) / middle, 3) if middle else 0.0


@dataclass
class Check:
    figure: str
    value: float
    op: str  # "<=" or ">="
    limit: float
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    @property
    def target(self) -> str:
        return f"{self.op} {self.limit:g}{self.unit}"

    def to_dict(self) -> dict:
        return {"figure": self.figure, "value": self.value, "target": self.target, "met": self.met}


@dataclass
class Result:
    scenario: int
    name: str
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # everything else measured, for the JSON
    shown: list[tuple[str, str]] = field(default_factory=list)  # extra (label, text) rows for the table
    config: dict = field(default_factory=dict)

    def check(self, figure: str, value: float, op: str, limit: float, unit: str = "") -> None:
        self.checks.append(Check(figure, round(value, 3), op, limit, unit))

    def show(self, label: str, text: str) -> None:
        self.shown.append((label, text))

    @property
    def met(self) -> bool:
        return all(check.met for check in self.checks)

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "name": self.name, "met": self.met,
                "target": {c.figure: c.target for c in self.checks},
                "figures": {**{c.figure: c.value for c in self.checks}, **self.figures},
                "checks": [c.to_dict() for c in self.checks], "config": self.config}


def table(results: list[Result]) -> str:
    """Checked figures in aligned columns; each scenario's other figures indented below them."""
    rows = [("scenario", "figure", "value", "target", "met")]
    for result in results:
        label = f"{result.scenario} {result.name}"
        for check in result.checks:
            rows.append((label, check.figure, f"{check.value:g}{check.unit}", check.target,
                         "yes" if check.met else "NO"))
            label = ""
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    line = lambda row: "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
    lines, rows = [line(rows[0]), "  ".join("-" * width for width in widths)], iter(rows[1:])
    for result in results:
        lines.extend(line(next(rows)) for _ in result.checks)
        lines.extend(f"{'':{widths[0]}}    {name}: {text}" for name, text in result.shown)
    return "\n".join(lines)


def write(path: Path, results: list[Result], run: dict) -> None:
    path.write_text(json.dumps({"run": run, "scenarios": [r.to_dict() for r in results]}, indent=2) + "\n")
