"""The analytics upsert against the limit (binary COPY) and the naive way (per-row INSERT).

Ours: 100,000 rows into a table that already holds half of them (and whose held rows all
change), one transaction of binary COPY into staging + one ``INSERT ... ON CONFLICT``.
Baselines, in the same run and alternating with ours:
- binary COPY of the same 100,000 rows into the empty table (the limit; goal ratio >= 0.3);
- the per-row ``INSERT ... ON CONFLICT DO UPDATE`` loop in one transaction (goal >= 25x),
  measured on 5,000 rows into a table holding half of them, compared in rows per second.
"""

import datetime as dt
import statistics
import time
from decimal import Decimal

import pandas as pd
from psycopg import sql

from bench.report import Comparison, write
from integration_patterns.defs.enrichment.upsert import COLUMNS, TABLE, ensure_table, upsert
from integration_patterns.resources.postgres import PostgresResource

SCHEMA = "bench_enrichment_upsert"
ROWS = 100_000
LOOP_ROWS = 5_000
REPETITIONS = 7
DAY = dt.date(2026, 1, 31)


def _postgres() -> PostgresResource:
    return PostgresResource.from_env()


def _frame(n: int, *, version: int) -> pd.DataFrame:
    ids = range(1, n + 1)
    seen = pd.Timestamp("2026-01-30T10:00:00Z")
    return pd.DataFrame(
        {
            "customer_id": list(ids),
            "name": [f"Customer {i}" for i in ids],
            "email": [f"c{i}@example.com" for i in ids],
            "order_count": [(i + version) % 12 for i in ids],
            "total_spent": [Decimal(i % 9_000 + version) / 100 for i in ids],
            "event_count": [(i * 7 + version) % 40 for i in ids],
            "last_event_at": [seen] * n,
            "engagement_score": [(i + version) % 101 for i in ids],
        }
    )


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (
            int(r.customer_id),
            r.name,
            r.email,
            int(r.order_count),
            r.total_spent,
            int(r.event_count),
            r.last_event_at.to_pydatetime(),
            int(r.engagement_score),
            DAY,
        )
        for r in frame.itertuples(index=False)
    ]


def _reset(postgres: PostgresResource, rows: list[tuple]) -> None:
    """Empty the table and COPY ``rows`` into it (untimed setup)."""
    table = sql.Identifier(SCHEMA, TABLE)
    with postgres.get_connection() as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
        if rows:
            _copy(conn, rows)
            conn.execute(sql.SQL("ANALYZE {}").format(table))


def _copy(conn, rows: list[tuple]) -> None:
    names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in COLUMNS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(SCHEMA, TABLE), names
    )
    with conn.cursor().copy(statement) as copy:
        copy.set_types([t for _, t in COLUMNS])
        for row in rows:
            copy.write_row(row)


def _ours(postgres: PostgresResource, held: list[tuple], frame: pd.DataFrame) -> float:
    _reset(postgres, held)
    started = time.perf_counter()
    result = upsert(postgres, SCHEMA, frame, partition_date=DAY)
    seconds = time.perf_counter() - started
    assert result.inserted == len(frame) - len(held) and result.updated == len(held), result
    return len(frame) / seconds


def _plain_copy(postgres: PostgresResource, rows: list[tuple]) -> float:
    _reset(postgres, [])
    started = time.perf_counter()
    with postgres.get_connection() as conn:
        _copy(conn, rows)
    return len(rows) / (time.perf_counter() - started)


def _per_row(postgres: PostgresResource, held: list[tuple], rows: list[tuple]) -> float:
    _reset(postgres, held)
    names = [n for n, _ in COLUMNS]
    statement = sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (customer_id) DO UPDATE SET {}"
    ).format(
        sql.Identifier(SCHEMA, TABLE),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ").join(sql.Placeholder() for _ in names),
        sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:]
        ),
    )
    started = time.perf_counter()
    with postgres.get_connection() as conn:
        for row in rows:
            conn.execute(statement, row)
    return len(rows) / (time.perf_counter() - started)


def main() -> None:
    postgres = _postgres()
    try:
        with postgres.get_connection() as conn:
            ensure_table(conn, SCHEMA)
        frame = _frame(ROWS, version=1)
        held = _rows(_frame(ROWS // 2, version=0))  # half of the ids, with other values
        all_rows = _rows(frame)
        loop_rows = all_rows[:LOOP_ROWS]
        loop_held = held[: LOOP_ROWS // 2]
        ours_large, ours_small, copies, loops = [], [], [], []
        for _ in range(REPETITIONS):
            ours_large.append(_ours(postgres, held, frame))
            copies.append(_plain_copy(postgres, all_rows))
            ours_small.append(_ours(postgres, loop_held, frame.head(LOOP_ROWS)))
            loops.append(_per_row(postgres, loop_held, loop_rows))
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
    finally:
        postgres.close()

    def median(samples: list[float]) -> float:
        return round(statistics.median(samples), 1)

    write(
        "upsert",
        [
            Comparison(
                name="vs binary COPY",
                unit="rows/s",
                ours=median(ours_large),
                baseline_name="binary COPY into empty table",
                baseline=median(copies),
                goal=0.3,
                extra={
                    "rows": ROWS,
                    "already_present": ROWS // 2,
                    "repetitions": REPETITIONS,
                    "ours_samples": [round(s) for s in ours_large],
                    "copy_samples": [round(s) for s in copies],
                },
            ),
            Comparison(
                name="vs per-row loop",
                unit="rows/s",
                ours=median(ours_large),
                baseline_name="per-row INSERT ON CONFLICT",
                baseline=median(loops),
                goal=25,
                extra={
                    "loop_rows": LOOP_ROWS,
                    "ours_at_loop_size_rows_per_s": median(ours_small),
                    "ratio_at_equal_size": round(median(ours_small) / median(loops), 1),
                    "loop_samples": [round(s) for s in loops],
                },
            ),
        ],
    )
