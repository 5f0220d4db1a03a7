"""When to retry an HTTP call and how long to wait: backoff with jitter, and server hints.

A server suggests waits in two headers: ``Retry-After`` (delay-seconds or an HTTP-date,
RFC 9110 section 10.2.3) and ``X-RateLimit-Reset`` (delta seconds, or an epoch timestamp
from some partners). Both are outside input: anything that is not a finite, non-negative
number of seconds is ignored, and every wait is clamped to ``max_retry_after`` so a partner
can neither park a run for a day nor, with ``inf`` or ``nan``, stall every client sharing
its budget. Without a hint the wait is exponential from a base delay, capped, with "equal
jitter" (half fixed, half random): many clients that failed together spread out, and no
wait collapses to zero.

Only idempotent methods are retried whatever the failure; POST and PATCH are retried when
the request carries an idempotency key, or when the connection was never established (the
server provably never saw the request).
"""

import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: RFC 9110 section 9.2.2; anything else may have had an effect the first time
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"
_SECONDS = re.compile(r"\s*(\d{1,15})(\.\d{1,9})?\s*", re.ASCII)
_EPOCH_FLOOR = 1_000_000_000  # values above this are timestamps, not delays


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unusable."""
    if value is None:
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        return None
    try:
        at = when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    return max(0.0, at - (time.time() if now is None else now))


def reset_from_header(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until the server's window resets (delta or epoch seconds), None if unusable."""
    if value is None or not _SECONDS.fullmatch(value):
        return None
    number = float(value)
    if number > _EPOCH_FLOOR:  # some partners send an epoch timestamp instead
        number -= time.time() if now is None else now
    return max(0.0, number)


def bounded(seconds: float | None, limit: float) -> float | None:
    """``seconds`` clamped to ``[0, limit]``; None for None or anything not finite."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), limit)


def may_retry(method: str, headers: dict[str, str] | None, *, reached_server: bool) -> bool:
    """Whether repeating the request cannot apply it twice (RFC 9110 section 9.2.2)."""
    if method.upper() in IDEMPOTENT_METHODS or not reached_server:
        return True
    return any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers or {})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait between attempts."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number ``retry`` (1-based) when the server gave no hint."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(retry - 1, 64))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def wait(self, retry: int, retry_after: str | None) -> float:
        """``Retry-After`` (validated, clamped) when the server sent one, else the backoff."""
        hinted = bounded(parse_retry_after(retry_after), self.max_retry_after)
        return self.backoff(retry) if hinted is None else hinted

    def budget_pause(self, headers: Mapping[str, str]) -> float | None:
        """The pause ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` asks for, if any."""
        try:
            spent = float(headers.get("X-RateLimit-Remaining", "1")) <= 0
        except ValueError:
            return None
        return self.server_pause(headers.get("X-RateLimit-Reset")) if spent else None

    def server_pause(self, reset: str | None) -> float | None:
        """The pause an ``X-RateLimit-Reset`` asks for, validated and clamped; None if unusable."""
        return bounded(reset_from_header(reset), self.max_retry_after)
