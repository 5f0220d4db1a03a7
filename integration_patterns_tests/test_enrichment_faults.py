"""Faults during the enrichment, provoked against the real servers.

The shared PostgreSQL server is never stopped (other suites use it): "PostgreSQL gone during
the upsert" is the upsert's own backend terminated with ``pg_terminate_backend`` while it
waits on a lock the test holds, which is what the client sees when the server goes away.
Each fault must end in a clear error naming what failed, quickly, with the analytics table
exactly as before.
"""

import datetime as dt
import threading
import time
from decimal import Decimal

import dagster as dg
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from devstack import sample_data
from devstack.enrichment_defs import enrichment_definitions
from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment.pool_health import pool_problems
from integration_patterns.defs.enrichment.upsert import (
    TABLE,
    InvalidBatchError,
    UpsertError,
    upsert,
)
from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns.resources.postgres import PoolExhaustedError
from integration_patterns_tests.conftest import mongo_from_env, postgres_from_env

DAY = dt.date(2026, 1, 31)
END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def frame_of(ids, score=10) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "name": [f"C{i}" for i in ids],
            "email": [f"c{i}@example.com" for i in ids],
            "order_count": [1] * len(ids),
            "total_spent": [Decimal("9.99")] * len(ids),
            "event_count": [2] * len(ids),
            "last_event_at": [pd.Timestamp("2026-01-30T10:00:00Z")] * len(ids),
            "engagement_score": [score] * len(ids),
        }
    )


def snapshot(postgres, store) -> list[tuple]:
    return postgres.fetch_all(
        sql.SQL("SELECT * FROM {} ORDER BY customer_id").format(store.table(TABLE))
    )


@pytest.fixture
def existing(postgres, store) -> list[tuple]:
    """An analytics table already holding 100 rows; returns them as they were."""
    upsert(postgres, store.schema_name, frame_of(range(1, 101)), partition_date=DAY)
    return snapshot(postgres, store)


def test_constraint_violation_mid_batch_rolls_everything_back(postgres, store, existing):
    batch = frame_of(range(50, 250), score=20)  # updates 50..100, inserts 101..249
    batch.loc[batch.index[-1], "engagement_score"] = 150  # the very last row breaks the CHECK
    with pytest.raises(UpsertError, match="rolled back: CheckViolation") as raised:
        upsert(postgres, store.schema_name, batch, partition_date=DAY)
    assert f"{store.schema_name}.{TABLE}" in str(raised.value)
    assert snapshot(postgres, store) == existing


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([1, 2, 2], r"duplicate ids \[2\]"),  # the same customer twice in one batch
        ([1, None], "1 NULL customer_id"),  # a row without a key
    ],
)
def test_ambiguous_batches_are_refused_before_touching_the_table(
    postgres, store, existing, ids, message
):
    batch = frame_of([1] * len(ids))
    batch["customer_id"] = pd.array(ids, dtype="Int64")
    with pytest.raises(InvalidBatchError, match=message):
        upsert(postgres, store.schema_name, batch, partition_date=DAY)
    assert snapshot(postgres, store) == existing


def _backend_waiting_on_lock(admin: psycopg.Connection, app: str, timeout: float = 45.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            (app,),
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"no backend of {app} ever waited on the lock")


def test_backend_killed_during_the_upsert_rolls_back_then_retries_by_itself(
    postgres, mongo, store, existing, unique
):
    # Sources whose enrichment would change every existing row and add new ones.
    sample_data.seed(
        postgres,
        mongo,
        volume=sample_data.Volume(customers=150, orders=1_500, events=1_500),
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    app = f"enrich_kill_{unique}"
    defs = enrichment_definitions(store, postgres=postgres_from_env(application_name=app))
    outcome: dict = {}
    admin = psycopg.connect(**postgres.connect_kwargs(), autocommit=True)
    holder = psycopg.connect(**postgres.connect_kwargs())
    try:
        # Hold a lock that lets the upsert stage its COPY but not write the table.
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(store.table(TABLE)))
        runner = threading.Thread(
            target=lambda: outcome.update(
                result=defs.resolve_job_def("customer_enrichment").execute_in_process(
                    partition_key=DAY.isoformat(), raise_on_error=False
                )
            )
        )
        runner.start()
        pid = _backend_waiting_on_lock(admin, app)
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        # The killed attempt rolled back: the table is untouched while the retry waits.
        assert snapshot(postgres, store) == existing
        holder.rollback()  # let the retry through
        runner.join(timeout=60)
        assert not runner.is_alive()
    finally:
        holder.rollback()
        holder.close()
        admin.close()

    result = outcome["result"]
    assert result.success  # a lost connection is transient: the step retried by itself
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retries] == ["customer_analytics"]
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures == []
    restarted = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert len(restarted) == 1
    assert snapshot(postgres, store) != existing


def test_exhausted_pool_fails_fast_naming_the_pool(store, unique):
    tiny = postgres_from_env(min_size=1, max_size=1, acquire_timeout=0.5)
    tiny.open()
    try:
        with tiny.get_connection():  # the pool's only connection, held
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError) as raised:
                upsert(tiny, store.schema_name, frame_of(range(1, 11)), partition_date=DAY)
            elapsed = time.monotonic() - started
        assert elapsed < 3, f"waited {elapsed:.1f}s for an acquire_timeout of 0.5s"
        assert tiny.pool_name in str(raised.value) and "max_size=1" in str(raised.value)
        # ...and the pool-health check reads the timeout from the statistics.
        assert any("pool exhausted" in p for p in pool_problems(tiny.stats()))
        assert any("waited for a connection" in p for p in pool_problems(tiny.stats()))
    finally:
        tiny.close()


def test_unreachable_mongodb_fails_within_the_timeout(store, free_port):
    down = mongo_from_env(port=free_port, server_selection_timeout_ms=800)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as raised:
        dg.materialize(
            [assets.user_events],
            partition_key=DAY.isoformat(),
            resources={"mongo": down, "enrichment_store": store},
        )
    elapsed = time.monotonic() - started
    assert f"MongoDB at 127.0.0.1:{free_port} is unreachable" in str(raised.value)
    assert elapsed < 5, f"took {elapsed:.1f}s for a server selection timeout of 0.8s"


def test_unreachable_postgres_fails_naming_the_address(store, free_port):
    down = postgres_from_env(port=free_port, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(dg.DagsterResourceFunctionError) as raised:
        dg.materialize(
            [assets.customers],
            partition_key=DAY.isoformat(),
            resources={"postgres": down, "enrichment_store": store},
        )
    cause = raised.value.user_exception
    assert isinstance(cause, ServiceUnavailableError)
    assert f"PostgreSQL at 127.0.0.1:{free_port} is unreachable" in str(cause)
    assert time.monotonic() - started < 5
