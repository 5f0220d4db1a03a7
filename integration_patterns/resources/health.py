"""What every resource reports about its service, and the one error for an unreachable one."""

import time
from collections.abc import Callable
from dataclasses import dataclass


class ServiceUnavailableError(ConnectionError):
    """A service did not answer within the configured timeout.

    The message always names the service, host and port so an operator can tell which
    dependency is down from the run's error alone, without reading resource config.
    """

    def __init__(self, service: str, address: str, reason: object) -> None:
        self.service = service
        self.address = address
        super().__init__(f"{service} at {address} is unreachable: {reason}")


@dataclass(frozen=True)
class Health:
    """The result of one health probe: did the service answer, how fast, and what it said."""

    service: str
    address: str
    ok: bool
    latency_ms: float
    detail: str


def probe(service: str, address: str, check: Callable[[], str]) -> Health:
    """Time ``check`` and turn any exception into an unhealthy result instead of raising."""
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as exc:  # a health probe reports failures, it does not propagate them
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Health(service, address, ok, round((time.perf_counter() - started) * 1000, 2), detail)
