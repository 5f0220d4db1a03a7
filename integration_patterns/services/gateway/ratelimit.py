"""Per-subject token buckets: a steady rate with a bounded burst.

Each token subject has a bucket of ``capacity`` tokens refilled at ``rate_per_minute / 60``
tokens per second; a request takes one. An empty bucket answers how long until the next
token, which the app returns as ``Retry-After`` with 429. The state is per process: with
several gateway replicas each enforces the limit on its own share of traffic.
"""

import math
import threading
import time
from collections.abc import Callable

MAX_TRACKED_SUBJECTS = 10_000


class SubjectRateLimiter:
    """Thread-safe token buckets, one per token subject: the gateway's callers.

    Not to be confused with ``integration_patterns.resources.http.RateLimiter``, which
    paces this code location's own calls to a partner API.
    """

    def __init__(
        self,
        *,
        rate_per_minute: int,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0 or capacity <= 0:
            raise ValueError("rate_per_minute and capacity must be positive")
        self._rate = rate_per_minute / 60.0
        self._capacity = float(capacity)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, updated)

    def acquire(self, subject: str) -> float:
        """Take one token for ``subject``; return 0 when granted, else seconds to wait."""
        with self._lock:
            now = self._clock()
            tokens, updated = self._buckets.get(subject, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - updated) * self._rate)
            if tokens >= 1.0:
                self._buckets[subject] = (tokens - 1.0, now)
                granted = 0.0
            else:
                self._buckets[subject] = (tokens, now)
                granted = (1.0 - tokens) / self._rate
            if len(self._buckets) > MAX_TRACKED_SUBJECTS:
                self._forget_full(now)
            return granted

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely holds no information: drop it.
        full = [
            subject
            for subject, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self._rate >= self._capacity
        ]
        for subject in full:
            del self._buckets[subject]


def retry_after_header(wait_seconds: float) -> str:
    """``Retry-After`` in whole seconds (RFC 9110 delay-seconds), never 0."""
    return str(max(1, math.ceil(wait_seconds)))
