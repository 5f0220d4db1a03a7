"""A circuit breaker that stops a run from hammering a partner that is down.

After a run of consecutive failures calls fail fast for a cool-down, then one probe is let
through; its success closes the circuit, its failure opens it again. The breaker keeps
what the last failure was (status and body excerpt), so a fast failure still says why.
"""

import threading
import time
from collections.abc import Callable


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
        #: status (or exception name) and body excerpt of the latest failure
        self.last_failure: tuple[int | str | None, str] = (None, "")

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

    def record_failure(self, status: int | str | None = None, body: str = "") -> None:
        """A call failed in a way that says the partner is unwell (``status``, ``body`` why)."""
        with self._lock:
            self.last_failure = (status, body)
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                if self._opened_at is None or self._probing:
                    self.times_opened += 1
                self._opened_at, self._probing = self._clock(), False
