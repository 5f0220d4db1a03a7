"""The one format every benchmark writes (see DESIGN.md, "Benchmarks").

A benchmark measures ours and a baseline in the same run over several repetitions and
reports medians; each comparison carries its ratio (ours over baseline, in the direction
where higher is better), the goal and whether the goal was met. A slow result never fails
anything: it is a finding for the issue note.
"""

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Comparison:
    """Ours against one named baseline."""

    name: str
    unit: str
    ours: float
    baseline_name: str
    baseline: float
    goal: float
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """ours/baseline where higher is better, baseline/ours where lower is better."""
        if self.higher_is_better:
            return self.ours / self.baseline if self.baseline else float("inf")
        return self.baseline / self.ours if self.ours else float("inf")

    def as_json(self) -> dict[str, Any]:
        """The DESIGN.md record."""
        record = asdict(self)
        record.pop("higher_is_better")
        record |= {"ratio": round(self.ratio, 4), "passed": self.ratio >= self.goal}
        return record


def median_of(repetitions: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``measure`` several times; return the median and every sample."""
    samples = [measure() for _ in range(repetitions)]
    return statistics.median(samples), samples


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def write(bench: str, comparisons: list[Comparison]) -> Path:
    """Write bench/results/<bench>.json and log a readable table."""
    RESULTS.mkdir(exist_ok=True)
    records = [c.as_json() for c in comparisons]
    path = RESULTS / f"{bench}.json"
    path.write_text(json.dumps(records, indent=2))
    lines = [f"{bench}:"]
    for r in records:
        lines.append(
            f"  {r['name']:<28} ours {r['ours']:>12.1f} {r['unit']:<10} "
            f"{r['baseline_name']} {r['baseline']:>12.1f}  ratio {r['ratio']:.3f} "
            f"(goal {r['goal']}) {'PASS' if r['passed'] else 'BELOW GOAL'}"
        )
        for key, value in r["extra"].items():
            lines.append(f"      {key}: {value}")
    import sys

    sys.stdout.write("\n".join(lines) + "\n")
    return path
