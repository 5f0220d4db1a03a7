"""Pooled PostgreSQL through psycopg 3 and psycopg_pool.

The pool is opened (and pre-warmed to ``min_size``) when a run starts and closed when it
ends; every checkout is health-checked so a connection killed by a database restart is
replaced instead of failing the first query. Besides psycopg_pool's own statistics the
resource counts the queries it ran and how many failed, which the pool-health checks use.
"""

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.health import Health, ServiceUnavailableError, probe

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg
    from psycopg_pool import ConnectionPool


def ensure_ddl(conn: "psycopg.Connection", lock_name: str, statements: Sequence[Any]) -> None:
    """Run idempotent DDL under a transaction-scoped advisory lock named ``lock_name``.

    ``CREATE ... IF NOT EXISTS`` still races in the catalog when two first runs start at
    once (a unique violation on pg_type); the lock serialises them. It is released when the
    caller's transaction ends, so call this inside the transaction that needs the tables.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name,))
    for statement in statements:
        conn.execute(statement)


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class PoolExhaustedError(TimeoutError):
    """No connection could be checked out of the pool within the acquire timeout."""


class QueryCounter:
    """Thread-safe count of statements executed and failed through the pool's cursors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queries = 0
        self.errors = 0

    def record(self, *, ok: bool) -> None:
        """Count one statement."""
        with self._lock:
            self.queries += 1
            self.errors += 0 if ok else 1


def _counting_cursor(counter: QueryCounter) -> "type[psycopg.Cursor]":
    """A cursor class that reports each execute() to ``counter``."""
    import psycopg

    class CountingCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):  # type: ignore[override]
            if not query:  # the pool's own liveness probe, not a statement of ours
                return super().execute(query, params, **kwargs)
            try:
                result = super().execute(query, params, **kwargs)
            except Exception:
                counter.record(ok=False)
                raise
            counter.record(ok=True)
            return result

        def executemany(self, query, params_seq, **kwargs):  # type: ignore[override]
            try:
                super().executemany(query, params_seq, **kwargs)
            except Exception:
                counter.record(ok=False)
                raise
            counter.record(ok=True)

    return CountingCursor


class PostgresResource(EnvConfigured, dg.ConfigurableResource):
    """A pooled PostgreSQL connection source.

    Example:
        ```python
        postgres = PostgresResource.from_env_vars()  # POSTGRES_*, read when a run starts

        @dg.asset
        def answer(postgres: PostgresResource) -> int:
            with postgres.get_connection() as conn:
                return conn.execute("SELECT 42").fetchone()[0]
        ```
    """

    host: str = Field(default="127.0.0.1", description="Server host name or address.")
    port: int = Field(default=5432, description="Server port.")
    dbname: str = Field(default="integration_patterns", description="Database name.")
    user: str = Field(default="integration", description="Role to connect as.")
    password: str = Field(default="", repr=False, description="Role password (secret).")
    sslmode: str = Field(
        default="prefer",
        description="libpq sslmode: disable, allow, prefer, require, verify-ca or verify-full.",
    )
    sslrootcert: str = Field(
        default="", description="CA certificate file for verify-ca/verify-full; empty for none."
    )
    min_size: int = Field(default=1, description="Connections opened at start and kept.")
    max_size: int = Field(default=4, description="Most connections the pool will open.")
    acquire_timeout: float = Field(
        default=10.0, description="Seconds to wait for a free connection before failing."
    )
    connect_timeout: float = Field(
        default=5.0, description="Seconds to wait when opening one connection or the pool."
    )
    application_name: str = Field(
        default="integration_patterns", description="Shown in pg_stat_activity."
    )

    env_vars: ClassVar[Mapping[str, str]] = {
        "host": "POSTGRES_HOST",
        "port": "POSTGRES_PORT",
        "dbname": "POSTGRES_DB",
        "user": "POSTGRES_USER",
        "password": "POSTGRES_PASSWORD",
        "sslmode": "POSTGRES_SSLMODE",
        "sslrootcert": "POSTGRES_SSLROOTCERT",
        "min_size": "POSTGRES_POOL_MIN_SIZE",
        "max_size": "POSTGRES_POOL_MAX_SIZE",
    }

    _pool: "ConnectionPool[psycopg.Connection] | None" = PrivateAttr(default=None)

    _counter: QueryCounter = PrivateAttr(default_factory=QueryCounter)

    @property
    def address(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def pool_name(self) -> str:
        """The pool's name in errors and statistics."""
        return f"postgres@{self.address}/{self.dbname}"

    def connect_kwargs(self) -> dict[str, Any]:
        """``psycopg.connect`` keywords for a connection outside the pool, checked like its own.

        For an admin session, a test's blocking session, or the receiver's async pool.
        """
        if self.sslmode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {SSL_MODES}, got {self.sslmode!r}")
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ValueError(
                "pool sizes need 0 <= min_size <= max_size and max_size >= 1, "
                f"got min_size={self.min_size}, max_size={self.max_size}"
            )
        tls = {"sslrootcert": self.sslrootcert} if self.sslrootcert else {}
        return tls | {
            "sslmode": self.sslmode,
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": self.application_name,
        }

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Open the pool and wait until ``min_size`` connections are ready."""
        self.open()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the pool; runs even when the run failed."""
        self.close()

    def open(self) -> None:
        """Open and pre-warm the pool; fail naming host and port if the server is down."""
        from psycopg_pool import ConnectionPool, PoolTimeout

        if self._pool is not None:
            return
        pool: ConnectionPool[psycopg.Connection] = ConnectionPool(
            kwargs={**self.connect_kwargs(), "cursor_factory": _counting_cursor(self._counter)},
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=self.acquire_timeout,
            check=ConnectionPool.check_connection,
            name=self.pool_name,
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except PoolTimeout:
            pool.close(timeout=0)
            raise ServiceUnavailableError("PostgreSQL", self.address, self._why_down()) from None
        self._pool = pool

    def _why_down(self) -> str:
        """Ask the server directly, so the error carries psycopg's reason, not a timeout."""
        import psycopg

        try:
            psycopg.connect(**self.connect_kwargs()).close()
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0]
        return f"pool not ready within {self.connect_timeout}s"

    def close(self) -> None:
        """Close the pool and every connection in it."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> "ConnectionPool[psycopg.Connection]":
        """The open pool (opened on first use outside a run, e.g. in a sensor or a test)."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        return self._pool

    @contextmanager
    def get_connection(self) -> "Iterator[psycopg.Connection]":
        """Check out a connection: commit when the block succeeds, roll back when it raises.

        Raises:
            PoolExhaustedError: no connection became free within ``acquire_timeout``.
        """
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=self.acquire_timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise PoolExhaustedError(
                f"pool {self.pool_name} exhausted: no connection free within "
                f"{self.acquire_timeout}s (max_size={self.max_size})"
            ) from exc

    def fetch_all(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None):
        """Run one statement with bound parameters and return its rows."""
        with self.get_connection() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        """psycopg_pool statistics plus queries executed and the error rate."""
        pool_stats = self._pool.get_stats() if self._pool is not None else {}
        queries, errors = self._counter.queries, self._counter.errors
        return {
            **pool_stats,
            "pool_name": self.pool_name,
            "queries_executed": queries,
            "query_errors": errors,
            "error_rate": round(errors / queries, 4) if queries else 0.0,
        }

    def health(self) -> Health:
        """Whether the server answers a query through the pool."""

        def check() -> str:
            with self.get_connection() as conn:
                row = conn.execute("SHOW server_version").fetchone()
            return f"server_version {row[0] if row else '?'}"

        return probe("PostgreSQL", self.address, check)
