"""Client-side protections: a process-wide request budget and a circuit breaker.

The budget is a token bucket shared by every client in the process that talks to the same
partner, because the partner counts our requests, not our client objects. Waiters pass a
turnstile one at a time and tokens refill from the moment a request was actually released,
so a thread that wakes late never lets the next one through early: with the default burst
of 1, released requests are at least ``60 / per_minute`` seconds apart, which keeps us
inside a *sliding* window limit too (a larger burst may exceed such a limit). The server's
own ``X-RateLimit-Remaining`` / ``-Reset`` headers, when sent, pause everyone sharing the
bucket before the partner has to answer 429.

The circuit breaker stops a run from hammering a partner that is down: after a run of
consecutive failures calls fail fast for a cool-down, then one probe is let through; its
success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

_REGISTRY: dict[tuple[str, float, int], RateLimiter] = {}
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
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.server_pauses += 1


def shared_limiter(key: str, per_minute: float, burst: int = 1) -> RateLimiter:
    """The one limiter of this process for ``key`` (the partner's base URL) and budget."""
    with _REGISTRY_LOCK:
        return _REGISTRY.setdefault((key, per_minute, burst), RateLimiter(per_minute, burst=burst))


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


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> one probe after ``cooldown``."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._probe_started = 0.0
        self.times_opened = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def allow(self) -> float | None:
        """None when a call may go ahead, else the seconds left in the cool-down."""
        with self._lock:
            if self._opened_at is None:
                return None
            now = self._clock()
            left = self.cooldown - (now - self._opened_at)
            if left > 0:
                return left
            if self._probing and now - self._probe_started < self.cooldown:
                return 0.0  # a probe is out; a probe that never reported is replaced later
            self._probing, self._probe_started = True, now  # exactly one probe at a time
            return None

    def record_success(self) -> None:
        """A call succeeded: close the circuit."""
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        """A call failed in a way that says the partner is unwell."""
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                if self._opened_at is None or self._probing:
                    self.times_opened += 1
                self._opened_at, self._probing = self._clock(), False
