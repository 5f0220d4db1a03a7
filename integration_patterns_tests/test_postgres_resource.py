"""PostgresResource against the real server: round trips, transactions, pool limits, faults."""

import time

import psycopg
import pytest

from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns.resources.postgres import PoolExhaustedError
from integration_patterns_tests.conftest import postgres_from_env


def test_round_trip_commits_on_success(postgres, unique):
    table = f"t_roundtrip_{unique}"
    with postgres.get_connection() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "ada"))
    try:
        assert postgres.fetch_all(f"SELECT id, name FROM {table}") == [(1, "ada")]
    finally:
        with postgres.get_connection() as conn:
            conn.execute(f"DROP TABLE {table}")


def test_error_rolls_back_the_whole_transaction(postgres, unique):
    table = f"t_rollback_{unique}"
    with postgres.get_connection() as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    try:
        with pytest.raises(psycopg.errors.UniqueViolation):
            with postgres.get_connection() as conn:
                conn.execute(f"INSERT INTO {table} VALUES (1)")
                conn.execute(f"INSERT INTO {table} VALUES (1)")  # violates the key
        # The first insert went with the failed transaction.
        assert postgres.fetch_all(f"SELECT count(*) FROM {table}") == [(0,)]
    finally:
        with postgres.get_connection() as conn:
            conn.execute(f"DROP TABLE {table}")


def test_statistics_count_queries_and_errors(postgres):
    before = postgres.stats()
    postgres.fetch_all("SELECT 1")
    with pytest.raises(psycopg.errors.DivisionByZero):
        postgres.fetch_all("SELECT 1 / 0")
    after = postgres.stats()
    assert after["queries_executed"] - before["queries_executed"] == 2
    assert after["query_errors"] - before["query_errors"] == 1
    assert 0 < after["error_rate"] <= 1
    # psycopg_pool's own figures come along unchanged.
    assert after["pool_max"] == postgres.max_size
    assert after["pool_name"] == postgres.pool_name


def test_pool_is_prewarmed_to_min_size():
    resource = postgres_from_env(min_size=3, max_size=3)
    resource.open()
    try:
        stats = resource.stats()
        assert stats["pool_size"] == 3
        assert stats["pool_available"] == 3
    finally:
        resource.close()


def test_exhausted_pool_times_out_naming_the_pool():
    resource = postgres_from_env(min_size=1, max_size=1, acquire_timeout=0.5)
    try:
        with resource.get_connection():
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError, match=r"postgres@127\.0\.0\.1:\d+/") as err:
                with resource.get_connection():
                    pass
            assert time.monotonic() - started < 3
        assert "max_size=1" in str(err.value)
        # The pool recovers once the connection is returned.
        assert resource.fetch_all("SELECT 2") == [(2,)]
    finally:
        resource.close()


def test_broken_connection_is_replaced_on_checkout(postgres):
    with postgres.get_connection() as conn:
        pid = conn.info.backend_pid
    # Kill that server process from outside, as a database restart would.
    with psycopg.connect(**postgres.connect_kwargs(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The checkout health check discards the dead connection instead of failing the query.
    assert postgres.fetch_all("SELECT 3") == [(3,)]


def test_closed_port_fails_fast_naming_host_and_port(free_port):
    resource = postgres_from_env(port=free_port, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=rf"PostgreSQL at 127\.0\.0\.1:{free_port}"):
        resource.open()
    assert time.monotonic() - started < 10
    health = resource.health()
    assert not health.ok and str(free_port) in health.detail
