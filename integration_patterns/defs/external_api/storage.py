"""The partner tables in PostgreSQL: records, quarantine and the high-water mark.

Records, quarantined items and the new high-water mark are written in one transaction, so
the mark never moves past data that was not stored: a failed run leaves the mark where it
was and the next run fetches the same records again (the upsert makes that harmless).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from integration_patterns.defs.external_api.transform import PartnerRecord, Quarantined
from integration_patterns.resources.postgres import ensure_ddl

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg


RECORDS = "partner_records"
QUARANTINE = "partner_records_quarantine"
WATERMARK = "partner_records_watermark"

DDL = f"""
CREATE TABLE IF NOT EXISTS {RECORDS} (
    source       text NOT NULL,
    id           text NOT NULL,
    name         text NOT NULL,
    value        double precision NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    api_version  text,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id)
);
CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    source          text NOT NULL,
    payload_hash    text NOT NULL,
    external_id     text,
    reason          text NOT NULL,
    payload         jsonb NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, payload_hash)
);
CREATE TABLE IF NOT EXISTS {WATERMARK} (
    source           text PRIMARY KEY,
    high_water_mark  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
"""

UPSERT = f"""
INSERT INTO {RECORDS} AS r (source, id, name, value, "timestamp", api_version)
SELECT %(source)s, u.* FROM unnest(
    %(ids)s::text[], %(names)s::text[], %(values)s::float8[],
    %(timestamps)s::timestamptz[], %(versions)s::text[]) AS u
ON CONFLICT (source, id) DO UPDATE SET
    name = EXCLUDED.name, value = EXCLUDED.value, "timestamp" = EXCLUDED."timestamp",
    api_version = EXCLUDED.api_version, loaded_at = now()
WHERE (r.name, r.value, r."timestamp", r.api_version)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.value, EXCLUDED."timestamp", EXCLUDED.api_version)
RETURNING (xmax = 0) AS inserted
"""

QUARANTINE_INSERT = f"""
INSERT INTO {QUARANTINE} (source, payload_hash, external_id, reason, payload)
SELECT %(source)s, u.* FROM unnest(
    %(hashes)s::text[], %(ids)s::text[], %(reasons)s::text[], %(payloads)s::jsonb[]) AS u
ON CONFLICT (source, payload_hash) DO NOTHING
RETURNING 1
"""


@dataclass(frozen=True)
class StoreResult:
    """What one batch did to the tables."""

    inserted: int
    updated: int
    unchanged: int
    quarantined_new: int
    high_water_mark: datetime | None


def ensure_tables(conn: "psycopg.Connection") -> None:
    """Create the tables once; the advisory lock keeps concurrent first runs from racing."""
    ensure_ddl(conn, RECORDS, [DDL])


def read_watermark(conn: "psycopg.Connection", source: str) -> datetime | None:
    """The newest partner timestamp stored for ``source``, or None before the first run."""
    row = conn.execute(
        f"SELECT high_water_mark FROM {WATERMARK} WHERE source = %s",  # type: ignore[arg-type]
        (source,),
    ).fetchone()
    return row[0] if row else None


def store(
    conn: "psycopg.Connection",
    source: str,
    records: list[PartnerRecord],
    quarantined: list[Quarantined],
) -> StoreResult:
    """Upsert records, quarantine items and move the high-water mark, in one transaction."""
    from psycopg.types.json import Jsonb

    flags: list[bool] = []
    with conn.cursor() as cur:
        if records:
            cur.execute(
                UPSERT,  # type: ignore[arg-type]
                {
                    "source": source,
                    "ids": [r.id for r in records],
                    "names": [r.name for r in records],
                    "values": [r.value for r in records],
                    "timestamps": [r.timestamp for r in records],
                    "versions": [r.api_version for r in records],
                },
            )
            flags = [row[0] for row in cur.fetchall()]
        new_quarantined = 0
        if quarantined:
            cur.execute(
                QUARANTINE_INSERT,  # type: ignore[arg-type]
                {
                    "source": source,
                    "hashes": [q.payload_hash for q in quarantined],
                    "ids": [q.external_id for q in quarantined],
                    "reasons": [q.reason for q in quarantined],
                    "payloads": [Jsonb(q.payload) for q in quarantined],
                },
            )
            new_quarantined = len(cur.fetchall())
        stamps = [r.timestamp for r in records] + [
            t for t in (q.timestamp for q in quarantined) if t is not None
        ]
        mark = max(stamps) if stamps else None
        if mark is not None:
            cur.execute(
                f"""INSERT INTO {WATERMARK} (source, high_water_mark) VALUES (%s, %s)
                ON CONFLICT (source) DO UPDATE SET updated_at = now(),
                    high_water_mark = GREATEST({WATERMARK}.high_water_mark,
                                               EXCLUDED.high_water_mark)""",  # type: ignore[arg-type]
                (source, mark),
            )
    inserted = sum(flags)
    return StoreResult(
        inserted=inserted,
        updated=len(flags) - inserted,
        unchanged=len(records) - len(flags),
        quarantined_new=new_quarantined,
        high_water_mark=mark,
    )
