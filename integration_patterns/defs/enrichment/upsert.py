"""The set-based, all-or-nothing write of ``customer_analytics``.

One transaction: binary COPY into a temporary staging table, then a single
``INSERT ... SELECT ... ON CONFLICT (customer_id) DO UPDATE``. Any error (a constraint, a
killed backend, a lost server) rolls the whole transaction back, so the table never holds
part of a batch. Rows of an older partition never overwrite a newer one, which makes a
backfill correct in any order, and rows whose values did not change are not rewritten, which
makes a second run of the same partition a no-op that says so.
"""

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integration_patterns.resources.postgres import PostgresResource, ensure_ddl

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg
    from psycopg import sql


if TYPE_CHECKING:  # pandas is imported by the steps that use it, not by loading the location
    import pandas as pd

# (column, PostgreSQL type) in table order; the binary COPY needs the types spelled out.
COLUMNS: list[tuple[str, str]] = [
    ("customer_id", "int8"),
    ("name", "text"),
    ("email", "text"),
    ("order_count", "int4"),
    ("total_spent", "numeric"),
    ("event_count", "int4"),
    ("last_event_at", "timestamptz"),
    ("engagement_score", "int2"),
    ("partition_date", "date"),
]
_NAMES = [name for name, _ in COLUMNS]
TABLE = "customer_analytics"
STAGING_BUFFERS = "64MB"


class UpsertError(RuntimeError):
    """The upsert failed and was rolled back: the table holds nothing of this batch."""


class InvalidBatchError(ValueError):
    """The batch itself is unusable (NULL or duplicate keys); nothing was sent."""


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did to the table."""

    batch: int  # rows handed in
    staged: int  # rows the COPY put in the staging table
    inserted: int
    updated: int
    unchanged: int  # already identical, not rewritten
    kept_newer: int  # not overwritten: the table holds a newer partition's row
    matching_after: int  # staged ids the table holds at this partition after the merge
    seconds: float

    @property
    def reconciled(self) -> bool:
        """Every row handed in was staged and is now in the table or superseded by a newer one."""
        return self.batch == self.staged == self.matching_after + self.kept_newer

    @property
    def rows_per_second(self) -> float:
        """Rows of the batch over the whole transaction's wall time."""
        return round(self.batch / self.seconds, 1) if self.seconds else 0.0


def analytics_ddl(schema: str) -> "list[sql.Composed]":
    """The target table (idempotent): the key the upsert conflicts on and the score's range."""
    from psycopg import sql

    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " customer_id bigint PRIMARY KEY,"
            " name text NOT NULL,"
            " email text,"
            " order_count integer NOT NULL,"
            " total_spent numeric(14, 2) NOT NULL,"
            " event_count integer NOT NULL,"
            " last_event_at timestamptz,"
            " engagement_score smallint NOT NULL"
            "   CONSTRAINT engagement_score_range CHECK (engagement_score BETWEEN 0 AND 100),"
            " partition_date date NOT NULL)"
            # Room on each page so a daily rewrite of every row can be HOT (no index churn).
            " WITH (fillfactor = 80)"
        ).format(sql.Identifier(schema, TABLE)),
    ]


def ensure_table(conn: "psycopg.Connection", schema: str) -> None:
    """Create the analytics table in ``schema`` unless it exists (safe for concurrent runs)."""
    ensure_ddl(conn, f"{schema}.{TABLE}_ddl", analytics_ddl(schema))


def frame_to_rows(frame: "pd.DataFrame", partition_date: dt.date) -> Iterable[Sequence[Any]]:
    """Plain Python values per row (psycopg's binary dumpers do not take numpy scalars)."""
    import pandas as pd

    last = pd.to_datetime(frame["last_event_at"], utc=True)  # any input dtype, even empty
    last_values = [
        None if missing else value
        for value, missing in zip(last.dt.to_pydatetime(), last.isna(), strict=True)
    ]
    email = frame["email"]
    columns = [
        frame["customer_id"].tolist(),
        frame["name"].tolist(),
        email.astype(object).where(email.notna(), None).tolist(),
        frame["order_count"].tolist(),
        frame["total_spent"].tolist(),
        frame["event_count"].tolist(),
        last_values,
        frame["engagement_score"].tolist(),
    ]
    return ((*values, partition_date) for values in zip(*columns, strict=True))


def _staging_memory(conn: "psycopg.Connection") -> None:
    """Keep staging and the read-back join in memory instead of spilling to temp files.

    ``work_mem`` (default 4MB) is raised for this transaction only, so the read-back hash
    join runs in one batch. ``temp_buffers`` (default 8MB, ~60k staged rows) is per session.

    PostgreSQL accepts a new value only before the session's first temporary table, so on a
    reused pooled session that was set differently the attempt is rolled back to a savepoint
    and the upsert goes on with what the session has: slower, never wrong.
    """
    import psycopg
    from psycopg import sql

    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(STAGING_BUFFERS)))
    current = conn.execute("SELECT current_setting('temp_buffers')").fetchone()
    if current and current[0] == STAGING_BUFFERS:
        return  # this pooled session was set up by an earlier upsert
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET temp_buffers = {}").format(sql.Literal(STAGING_BUFFERS)))
    except psycopg.errors.InvalidParameterValue:
        pass


def _validate_keys(frame: "pd.DataFrame") -> None:
    ids = frame["customer_id"]
    nulls = int(ids.isna().to_numpy().sum())
    dupes = sorted(set(ids[ids.duplicated() & ids.notna()].tolist()))
    if nulls or dupes:
        raise InvalidBatchError(
            f"batch has {nulls} NULL customer_id(s) and duplicate ids {dupes[:10]}"
            f"{' ...' if len(dupes) > 10 else ''}; refusing to upsert an ambiguous batch"
        )


_MERGE = """
WITH upserted AS (
    INSERT INTO {target} AS t ({columns})
    SELECT {columns} FROM {staging}
    ON CONFLICT (customer_id) DO UPDATE SET {assignments}
    WHERE t.partition_date <= EXCLUDED.partition_date
      AND ({target_cols}) IS DISTINCT FROM ({excluded_cols})
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""

# Read back inside the transaction: how many staged ids the table now holds at this
# partition, and how many it kept from a newer one. Together they must cover the batch.
_AFTER = """
SELECT count(*) FILTER (WHERE t.partition_date = %(partition_date)s),
       count(*) FILTER (WHERE t.partition_date > %(partition_date)s)
FROM {staging} s JOIN {target} t USING (customer_id)
"""


def upsert(
    postgres: PostgresResource,
    schema: str,
    frame: "pd.DataFrame",
    *,
    partition_date: dt.date,
) -> UpsertResult:
    """Write ``frame`` into ``schema.customer_analytics`` in one transaction; count changes.

    Raises:
        InvalidBatchError: NULL or duplicate customer ids (checked before connecting).
        UpsertError: the database refused or lost the transaction; it was rolled back.
    """
    import psycopg
    from psycopg import sql

    _validate_keys(frame)
    table = sql.Identifier(schema, TABLE)
    staging = sql.Identifier("customer_analytics_staging")
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in _NAMES)
    updatable = [n for n in _NAMES if n != "customer_id"]
    target_cols = sql.SQL(", ").join(sql.Identifier("t", n) for n in updatable)
    merge = sql.SQL(_MERGE).format(
        target=table,
        staging=staging,
        columns=columns,
        assignments=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updatable
        ),
        target_cols=target_cols,
        excluded_cols=sql.SQL(", ").join(sql.Identifier("excluded", n) for n in updatable),
    )
    started = time.perf_counter()
    try:
        with postgres.get_connection() as conn:  # DDL in its own short transaction, so
            ensure_table(conn, schema)  # its lock never spans a concurrent run's upsert
        with postgres.get_connection() as conn:
            _staging_memory(conn)
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    staging, table
                )
            )
            cursor = conn.cursor()
            with cursor.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(staging, columns)
            ) as copy:
                copy.set_types([pg_type for _, pg_type in COLUMNS])
                for row in frame_to_rows(frame, partition_date):
                    copy.write_row(row)
            staged = cursor.rowcount
            inserted, updated = conn.execute(merge).fetchone() or (0, 0)
            after = sql.SQL(_AFTER).format(staging=staging, target=table)
            counts = conn.execute(after, {"partition_date": partition_date}).fetchone()
            matching, newer = counts or (0, 0)
    except psycopg.Error as exc:
        raise UpsertError(
            f"upsert of {len(frame)} rows into {schema}.{TABLE} rolled back: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else exc!r}"
        ) from exc
    return UpsertResult(
        batch=len(frame),
        staged=staged,
        inserted=inserted,
        updated=updated,
        unchanged=matching - inserted - updated,
        kept_newer=newer,
        matching_after=matching,
        seconds=round(time.perf_counter() - started, 4),
    )
