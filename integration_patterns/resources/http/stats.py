"""What a REST client did during a run: counters and latency percentiles for metadata.

Kept apart from the client so assets, tests and benchmarks read the same figures: requests,
retries, 429s, server errors, timeouts, dropped connections, re-authentications, pages,
redirects followed, server-requested pauses, and the p50/p95 latency of every attempt.
"""

import statistics
import threading
from dataclasses import dataclass, field


@dataclass
class CallStats:
    """What the client did, for run metadata; safe to share between threads."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    reauthentications: int = 0
    pages: int = 0
    redirects: int = 0
    server_pauses: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        """Increase one counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def latency(self, ms: float) -> None:
        """Record one attempt's latency."""
        with self._lock:
            self.requests += 1
            self.latencies_ms.append(ms)

    def percentile(self, q: int) -> float:
        """The q-th latency percentile in ms (0 with no requests)."""
        with self._lock:
            data = sorted(self.latencies_ms)
        if len(data) < 2:
            return round(data[0], 2) if data else 0.0
        return round(statistics.quantiles(data, n=100, method="inclusive")[q - 1], 2)

    def as_metadata(self) -> dict[str, float | int]:
        """Counters and latency percentiles, ready for Dagster metadata."""
        names = (
            "requests",
            "retries",
            "rate_limited",
            "server_errors",
            "timeouts",
            "connection_errors",
            "reauthentications",
            "pages",
            "redirects",
            "server_pauses",
        )
        with self._lock:
            counters: dict[str, float | int] = {name: getattr(self, name) for name in names}
        return counters | {
            "latency_p50_ms": self.percentile(50),
            "latency_p95_ms": self.percentile(95),
        }
