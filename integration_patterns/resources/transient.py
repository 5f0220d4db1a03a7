"""Which failures are worth retrying, and the one retry policy the patterns use for them.

A broker or database that is unreachable, restarting or failing over usually answers again
within seconds: such a step retries by itself with exponential backoff. A deterministic
failure (bad configuration, a bug, an uncommitted predecessor range) fails the same way on
every attempt, so it fails at once: ``transient_only`` turns it into a ``dg.Failure`` that
bypasses the retry policy, with the original exception kept as its cause.

Run-level retries (``run_retries`` in ``dagster.yaml``) cover the run worker itself dying;
they are off for step failures, which these step policies handle.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
from confluent_kafka import KafkaException

from integration_patterns.resources.kafka import is_retriable
from integration_patterns.resources.rabbitmq_publisher import PublishError

F = TypeVar("F", bound=Callable[..., Any])

TRANSIENT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""About 2 s, 4 s, 8 s between attempts: long enough for a broker restart or failover."""


@functools.cache
def _classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(unavailable, deterministic) error classes, built on the first failure.

    pika and pymongo are imported here rather than at module level: loading the code
    location must not pay for client libraries that only some steps use.
    """
    import pika.exceptions
    import psycopg
    import pymongo.errors

    unavailable = (
        ConnectionError,  # includes ServiceUnavailableError from every resource
        TimeoutError,
        psycopg.OperationalError,  # lost connection, server shutting down, pool timeout
        pika.exceptions.AMQPConnectionError,
        pika.exceptions.ConnectionClosed,
        pymongo.errors.ConnectionFailure,  # AutoReconnect, NetworkTimeout, server selection
    )
    # Wrong credentials or permissions fail the same way on every attempt.
    deterministic = (
        pika.exceptions.ProbableAuthenticationError,
        pika.exceptions.ProbableAccessDeniedError,
        pika.exceptions.AuthenticationError,
        pymongo.errors.OperationFailure,
    )
    return unavailable, deterministic


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a service is unavailable for now."""
    unavailable, deterministic = _classes()
    if any(isinstance(error, deterministic) for error in _chain(exc)):
        return False
    for error in _chain(exc):
        if isinstance(error, unavailable):
            return True
        if isinstance(error, KafkaException) and is_retriable(error):
            return True
        if isinstance(error, PublishError) and error.report.connection_lost:
            return True
    return False


@contextmanager
def transient_only() -> Iterator[None]:
    """Let transient errors reach the retry policy; fail deterministic ones at once."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        raise dg.Failure(
            description=f"{type(exc).__name__}: {exc} (deterministic: not retried)",
            metadata={"error_type": type(exc).__name__},
            allow_retries=False,
        ) from exc


def retry_transient(fn: F) -> F:
    """Decorate an op or asset body with ``transient_only`` (keeps its signature)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with transient_only():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
