"""Run benchmarks: ``python -m bench`` runs all, ``python -m bench upsert`` runs one.

Each benchmark is a module ``bench/<name>.py`` with a ``main() -> None`` that measures and
calls ``bench.report.write``.
"""

import importlib
import pkgutil
import signal
import sys
from pathlib import Path

# Helpers, not benchmarks: the report format, run_latency's baseline code location and the
# distributed benchmark's per-step timeline.
SKIP = {"report", "__main__", "minimal_location", "step_timeline"}


def _exit_once(signum: int, _frame: object) -> None:
    """Exit on the first SIGTERM and ignore repeats.

    ``uv run`` forwards the SIGTERM it got, so a second one cannot interrupt the cleanup the
    first one started.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    """Run the named benchmarks, or every one."""
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name not in SKIP
    )
    chosen = argv or available
    unknown = set(chosen) - set(available)
    if unknown:
        sys.stderr.write(f"unknown benchmark(s) {sorted(unknown)}; available: {available}\n")
        return 2
    # SIGTERM unwinds like Ctrl-C: each benchmark's context managers stop the stacks they
    # started (receiver, webserver, daemon), which Python's default SIGTERM would leave behind.
    signal.signal(signal.SIGTERM, _exit_once)
    for name in chosen:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
