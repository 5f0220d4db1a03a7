"""Pool health as data: the statistics every run records and the verdict a check gives.

The thresholds follow the issue: a query error rate above 5%, any request that had to wait
for a connection, or any request that timed out (the pool was exhausted). They produce a
WARN-severity check result, not a failed run: a run that waited still produced correct data,
but an operator should size the pool or the ``postgres`` concurrency limit before it starts
timing out.
"""

from typing import Any

import dagster as dg

from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource

MAX_ERROR_RATE = 0.05
POSTGRES_POOL_CHECK = "postgres_pool_healthy"


def pool_problems(stats: dict[str, Any]) -> list[str]:
    """Human-readable reasons the pool looks unhealthy; empty when it is fine.

    ``stats`` is ``PostgresResource.stats()``: psycopg_pool's counters (zero-valued keys may
    be missing) plus ``queries_executed``/``query_errors``/``error_rate``.
    """
    problems = []
    error_rate = float(stats.get("error_rate", 0.0))
    if error_rate > MAX_ERROR_RATE:
        problems.append(
            f"query error rate {error_rate:.1%} above {MAX_ERROR_RATE:.0%} "
            f"({stats.get('query_errors', 0)} of {stats.get('queries_executed', 0)})"
        )
    waiting = int(stats.get("requests_waiting", 0))
    queued = int(stats.get("requests_queued", 0))
    if waiting or queued:
        problems.append(
            f"{queued} request(s) waited for a connection "
            f"({stats.get('requests_wait_ms', 0)} ms in total, {waiting} waiting now)"
        )
    timeouts = int(stats.get("requests_errors", 0))
    if timeouts:
        problems.append(f"pool exhausted: {timeouts} request(s) got no connection in time")
    return problems


def postgres_pool_metadata(postgres: PostgresResource) -> dict[str, Any]:
    """The pool statistics as one JSON metadata entry (no credentials in them)."""
    return {"postgres_pool": dg.MetadataValue.json(postgres.stats())}


def mongo_pool_metadata(mongo: MongoResource) -> dict[str, Any]:
    """The MongoDB pool settings in force as one JSON metadata entry."""
    return {"mongo_pool": dg.MetadataValue.json(mongo.pool_settings())}


def postgres_pool_check(postgres: PostgresResource) -> dg.AssetCheckResult:
    """The pool-health check result, with the statistics it judged attached."""
    stats = postgres.stats()
    problems = pool_problems(stats)
    return dg.AssetCheckResult(
        check_name=POSTGRES_POOL_CHECK,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or "no waits, no timeouts, error rate within 5%",
        metadata={
            "error_rate": float(stats.get("error_rate", 0.0)),
            "requests_queued": int(stats.get("requests_queued", 0)),
            "requests_errors": int(stats.get("requests_errors", 0)),
            "pool_max": int(stats.get("pool_max", postgres.max_size)),
        },
    )
