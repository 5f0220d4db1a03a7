"""The ``webhook_inbox`` table: one home for its schema, read by the receiver and by Dagster.

The receiver inserts verified deliveries; the routing sensor reads pending rows past its
``(txid, id)`` cursor; processors record each event's outcome. The contract, which the
operations monitors also read:

- ``(source, delivery_id)`` is unique, so a redelivery inserts nothing (the insert says
  ``ON CONFLICT DO NOTHING`` without a target, so any further unique constraint, such as a
  body digest for schemes whose id is unsigned, also turns a repeat into a duplicate).
- For schemes whose delivery id is not signed (GitHub's ``X-GitHub-Delivery``), a captured
  body could be replayed under a fresh id; those rows also carry ``body_digest`` (SHA-256 of
  the raw body), unique per source, so the replay is a duplicate too. Other schemes leave it
  NULL (a signed id is the sender's own idempotency key; equal bodies may be distinct events).
- ``txid`` is the id of the inserting transaction: the sensor only reads rows whose
  transaction is older than every transaction still running, so a row that commits late
  never falls behind its cursor (ids are taken at insert time, not at commit time).
- ``status`` is ``pending`` until a processor records ``processed``, ``failed`` (with
  ``reason``) or ``unrouted``, together with ``route``, ``run_id`` and ``processed_at``.

Tables created before the status columns existed are migrated in place, under the same
advisory lock as the creation; their old rows were each routed to a run of their own by the
first design, so they are marked ``processed`` with a reason saying so, not left pending.
"""

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from integration_patterns.resources.postgres import ensure_ddl

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg
    from psycopg import sql


INBOX_TABLE = "webhook_inbox"
SCHEMA_VARIABLE = "WEBHOOK_INBOX_SCHEMA"
DEFAULT_SCHEMA = "public"

PENDING, PROCESSED, FAILED, UNROUTED = "pending", "processed", "failed", "unrouted"
STATUSES = (PENDING, PROCESSED, FAILED, UNROUTED)

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
    status      text        NOT NULL DEFAULT 'pending',
    reason      text,
    run_id      text,
    processed_at timestamptz,
    route       text,
    CONSTRAINT webhook_inbox_delivery UNIQUE (source, delivery_id)
);
DO $migrate$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = {schema_text} AND table_name = 'webhook_inbox'
          AND column_name = 'status'
    ) THEN
        ALTER TABLE {table}
            ADD COLUMN status text NOT NULL DEFAULT 'processed',
            ADD COLUMN reason text,
            ADD COLUMN run_id text,
            ADD COLUMN processed_at timestamptz,
            ADD COLUMN route text;
        UPDATE {table} SET reason = 'routed to a run of its own before outcomes were recorded';
        ALTER TABLE {table} ALTER COLUMN status SET DEFAULT 'pending';
    END IF;
END
$migrate$;
CREATE INDEX IF NOT EXISTS webhook_inbox_txid ON {table} (txid, id);
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS body_digest text;
CREATE UNIQUE INDEX IF NOT EXISTS webhook_inbox_body_digest
    ON {table} (source, body_digest) WHERE body_digest IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_inbox_outcome ON {table} (status, source, received_at)
    WHERE status <> 'processed';
"""

# ``ON CONFLICT DO NOTHING`` without a target: any unique constraint makes a repeat a duplicate.
_INSERT = """
INSERT INTO {table} (source, delivery_id, event_type, payload, headers, body_digest)
SELECT r.source, r.delivery_id, r.event_type, r.payload, r.headers, r.body_digest
FROM jsonb_to_recordset(%s::jsonb)
    AS r(source text, delivery_id text, event_type text, payload jsonb, headers jsonb,
         body_digest text)
ON CONFLICT DO NOTHING
RETURNING source, delivery_id
"""


def schema_from_env(env: Mapping[str, str] | None = None) -> str:
    """The inbox schema both sides use: ``WEBHOOK_INBOX_SCHEMA``, default ``public``."""
    env = os.environ if env is None else env
    return env.get(SCHEMA_VARIABLE, "").strip() or DEFAULT_SCHEMA


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


def inbox_table(schema: str) -> "sql.Composed":
    """The schema-qualified inbox table, quoted by psycopg."""
    from psycopg import sql

    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(INBOX_TABLE))


def ddl(schema: str) -> "sql.Composed":
    """Create or migrate the inbox in ``schema`` (idempotent; run under ``ensure_ddl``)."""
    from psycopg import sql

    return sql.SQL(_DDL).format(
        schema=sql.Identifier(schema), table=inbox_table(schema), schema_text=sql.Literal(schema)
    )


@functools.lru_cache(maxsize=16)
def insert_query(schema: str) -> bytes:
    """The batch insert, rendered once per schema.

    Composing and rendering the SQL cost more CPU than the insert itself (about 200 us per
    statement when measured), and constant text lets psycopg prepare it.
    """
    from psycopg import sql

    return sql.SQL(_INSERT).format(table=inbox_table(schema)).as_bytes(None)


def insert_parameter(rows: Sequence[InboxRow]) -> str:
    """The whole batch as one JSON document, the insert's only parameter.

    A single text parameter is the cheapest thing psycopg can send (text arrays are escaped
    element by element in Python), and the raw payload text is embedded as is: it already
    parsed as JSON, so it stays byte-exact.
    """
    batch = ",".join(
        f'{{"source":{json.dumps(r.source)},"delivery_id":{json.dumps(r.delivery_id)},'
        f'"event_type":{json.dumps(r.event_type)},"headers":{json.dumps(r.headers)},'
        f'"body_digest":{json.dumps(r.body_digest)},"payload":{r.payload_json}}}'
        for r in rows
    )
    return f"[{batch}]"


def ensure_inbox(conn: "psycopg.Connection", schema: str) -> None:
    """Create or migrate the schema, table and indexes (safe to run from many processes)."""
    with conn.transaction():
        ensure_ddl(conn, "webhook_inbox_ddl", [ddl(schema)])


def insert_rows(
    conn: "psycopg.Connection", schema: str, rows: Sequence[InboxRow]
) -> set[tuple[str, str]]:
    """Insert the rows with one statement; return the keys that were new.

    One statement is one transaction: on an autocommit connection it is committed when this
    returns; otherwise the caller's transaction holds it. Rows whose key (or, where set, body
    digest) is already stored, or repeated earlier in ``rows``, are skipped.
    """
    cur = conn.execute(insert_query(schema), (insert_parameter(rows),))
    return {(source, delivery_id) for source, delivery_id in cur.fetchall()}


async def insert_rows_async(
    conn: "psycopg.AsyncConnection", schema: str, rows: Sequence[InboxRow]
) -> set[tuple[str, str]]:
    """``insert_rows`` on an asynchronous connection (the receiver's event loop)."""
    cur = await conn.execute(insert_query(schema), (insert_parameter(rows),))
    return {(source, delivery_id) for source, delivery_id in await cur.fetchall()}
