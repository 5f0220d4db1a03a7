"""A process-wide request budget: a token bucket shared by every client of one partner.

The bucket is shared by every client in the process that talks to the same partner,
because the partner counts our requests, not our client objects. Waiters pass a
turnstile one at a time and tokens refill from the moment a request was actually released,
so a thread that wakes late never lets the next one through early: with the default burst
of 1, released requests are at least ``60 / per_minute`` seconds apart, which keeps us
inside a *sliding* window limit too (a larger burst may exceed such a limit). The server's
own ``X-RateLimit-Remaining`` / ``-Reset`` headers, when sent, pause everyone sharing the
bucket before the partner has to answer 429.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable

_REGISTRY: "dict[tuple[str, float, int], RateLimiter]" = {}
_REGISTRY_LOCK = threading.Lock()


class RateLimiter:
    """At most ``per_minute`` acquisitions per minute across threads; blocks until allowed."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.burst = burst
        self._clock, self._sleep = clock, sleep
        self._turnstile = threading.Lock()  # held while waiting: one waiter at a time
        self._lock = threading.Lock()  # guards the bucket; pause() never waits on a sleeper
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = 0.0
        self.waited = 0.0
        self.server_pauses = 0
        #: release times of the latest requests, for measuring the rate actually held
        self.grants: deque[float] = deque(maxlen=10_000)

    def acquire(self) -> float:
        """Wait for a token (and any server-requested pause); return the seconds waited."""
        waited = 0.0
        with self._turnstile:
            while True:
                with self._lock:
                    now = self._clock()
                    elapsed = now - self._stamp
                    self._tokens = min(self.burst, self._tokens + elapsed / self.interval)
                    self._stamp = now
                    wait = max((1 - self._tokens) * self.interval, self._paused_until - now)
                    if wait <= 1e-9:
                        self._tokens -= 1
                        self.grants.append(now)
                        self.waited += waited
                        return waited
                self._sleep(wait)
                waited += wait

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (the server said its budget is spent)."""
        if not math.isfinite(seconds) or seconds <= 0:
            return  # callers clamp server hints; this guards the shared state all the same
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.server_pauses += 1


class ServerHint:
    """Pauses for limiters without a configured budget: the server headers alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.server_pauses = 0
        self.waited = 0.0

    def acquire(self) -> float:
        """Sleep while a server-requested pause lasts."""
        with self._lock:
            wait = max(0.0, self._paused_until - self._clock())
            self.waited += wait
        if wait > 0:
            time.sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold requests for ``seconds``."""
        if not math.isfinite(seconds) or seconds <= 0:
            return  # callers clamp server hints; this guards the shared state all the same
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.server_pauses += 1


def shared_limiter(key: str, per_minute: float, burst: int = 1) -> RateLimiter:
    """The one limiter of this process for ``key`` (the partner's base URL) and budget."""
    with _REGISTRY_LOCK:
        return _REGISTRY.setdefault((key, per_minute, burst), RateLimiter(per_minute, burst=burst))
