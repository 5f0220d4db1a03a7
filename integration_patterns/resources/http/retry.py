"""When to retry an HTTP call and how long to wait: backoff with jitter and ``Retry-After``.

``Retry-After`` arrives as delay-seconds or as an HTTP-date (RFC 9110); both are parsed,
a date in the past means "now", and the wait is clamped to a maximum so a partner cannot
park a run for an hour. Without the header the wait is exponential from a base delay,
capped, with "equal jitter" (half fixed, half random): many clients that failed together
spread out, and no wait collapses to zero.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unparsable."""
    if value is None:
        return None
    if _SECONDS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait between attempts."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number ``retry`` (1-based) when the server gave no hint."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def wait(self, retry: int, retry_after: str | None) -> float:
        """``Retry-After`` (clamped) when the server sent one, else the backoff."""
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        return self.backoff(retry)


def reset_from_header(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until the server's window resets: delta seconds, or epoch seconds if huge."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number > 1_000_000_000:  # some partners send an epoch timestamp instead
        number -= time.time() if now is None else now
    return max(0.0, number)
