"""The ``webhook_inbox`` table: its DDL and the insert that makes a delivery durable.

``(source, delivery_id)`` is unique, so a redelivery inserts nothing and is reported as a
duplicate. Each row also records the id of the transaction that inserted it (``txid``): the
routing sensor reads only rows whose transaction is older than every transaction still
running, so a row that commits late can never fall behind the sensor's cursor (a bigserial
alone cannot promise that: ids are taken at insert time, not at commit time).

For schemes whose delivery id is not signed (GitHub's ``X-GitHub-Delivery``), a captured
body could be replayed under a fresh id; those rows also carry ``body_digest`` (SHA-256 of
the raw body), unique per source, so the replay is a duplicate too. Other schemes leave it
NULL (a signed id is the sender's own idempotency key; equal bodies may be distinct events).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from integration_patterns.resources.postgres import ensure_ddl

INBOX_TABLE = "webhook_inbox"

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    id          bigserial PRIMARY KEY,
    source      text        NOT NULL,
    delivery_id text        NOT NULL,
    event_type  text,
    payload     jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    txid        bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    CONSTRAINT webhook_inbox_delivery UNIQUE (source, delivery_id)
);
CREATE INDEX IF NOT EXISTS webhook_inbox_txid ON {table} (txid, id);
-- Added after the first release: tables created before it gain the column here.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS body_digest text;
CREATE UNIQUE INDEX IF NOT EXISTS webhook_inbox_body_digest
    ON {table} (source, body_digest) WHERE body_digest IS NOT NULL;
"""

_INSERT = """
INSERT INTO {table} (source, delivery_id, event_type, payload, headers, body_digest)
SELECT r.source, r.delivery_id, r.event_type, r.payload, r.headers, r.body_digest
FROM jsonb_to_recordset(%s::jsonb)
    AS r(source text, delivery_id text, event_type text, payload jsonb, headers jsonb,
         body_digest text)
ON CONFLICT DO NOTHING
RETURNING source, delivery_id
"""


@dataclass(frozen=True)
class InboxRow:
    """One verified delivery, ready to insert (payload is the raw body's JSON text)."""

    source: str
    delivery_id: str
    event_type: str | None
    payload_json: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    body_digest: str | None = None
    """SHA-256 hex of the raw body, set only when the delivery id is unsigned."""

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key."""
        return (self.source, self.delivery_id)


def inbox_table(schema: str) -> sql.Composed:
    """The schema-qualified inbox table, quoted by psycopg."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(INBOX_TABLE))


@functools.lru_cache(maxsize=16)
def _insert_query(schema: str) -> bytes:
    # Rendered once: composing and rendering the SQL cost more CPU than the insert itself
    # (about 200 us per statement when measured), and constant text lets psycopg prepare it.
    return sql.SQL(_INSERT).format(table=inbox_table(schema)).as_bytes(None)


def ensure_inbox(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema, table and index if missing (safe to run from many processes)."""
    with conn.transaction():
        ensure_ddl(
            conn,
            "webhook_inbox_ddl",
            [sql.SQL(_DDL).format(schema=sql.Identifier(schema), table=inbox_table(schema))],
        )


def insert_rows(
    conn: psycopg.Connection, schema: str, rows: Sequence[InboxRow]
) -> set[tuple[str, str]]:
    """Insert the rows with one statement; return the keys that were new.

    One statement is one transaction: on an autocommit connection it is committed when this
    returns (one round trip for the whole batch); otherwise the caller's transaction holds
    it. Rows whose key (or, where set, body digest) is already stored, or repeated earlier
    in ``rows``, are skipped.
    """
    # One JSON document for the whole batch: a single text parameter is the cheapest thing
    # psycopg can send (text arrays are escaped element by element in Python), and the raw
    # payload text is embedded as is -- it already parsed as JSON, so it stays byte-exact.
    batch = ",".join(
        f'{{"source":{json.dumps(r.source)},"delivery_id":{json.dumps(r.delivery_id)},'
        f'"event_type":{json.dumps(r.event_type)},"headers":{json.dumps(r.headers)},'
        f'"body_digest":{json.dumps(r.body_digest)},"payload":{r.payload_json}}}'
        for r in rows
    )
    cur = conn.execute(_insert_query(schema), (f"[{batch}]",))
    return {(source, delivery_id) for source, delivery_id in cur.fetchall()}
