"""Apply a batch of inbox events set-based, and record each event's outcome in the inbox.

The batch is cut into chunks bounded in count and stored bytes, and each chunk is one
transaction: claim its events still in a claimable status (``FOR UPDATE SKIP LOCKED``, so
two runs handed overlapping ids never apply an event twice), parse each payload in Python (a
malformed one becomes ``failed`` with its reason and the rest go on), upsert the valid rows
with one statement, write every outcome with one more, commit. If anything fails as a whole
(the database went away), that chunk rolls back, its events stay pending, and the retried
step claims what is still pending: the chunks already committed are not applied again.
Applying the same batch again finds nothing left to claim; re-applying an event (replay)
changes nothing either, because a row is only overwritten by an event that arrived later
(``last_inbox_id``), inside a chunk too.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from integration_patterns.defs.webhooks.processors import (
    PROCESSORS,
    MalformedEventError,
    Processor,
    reason_of,
)
from integration_patterns.defs.webhooks.routes import UNKNOWN
from integration_patterns.defs.webhooks.store import UNKNOWN_TABLE, WebhookStore
from integration_patterns.inbox import FAILED, PENDING, PROCESSED, UNROUTED

# A batch run is named by its route and inbox id range: its events are the route's events
# in that range still pending, routed by the same table the sensor used.
_MEMBERS = """
SELECT id, source, event_type,
       CASE WHEN event_type = ANY(%(with_action)s) THEN payload->>'action' END
FROM {inbox}
WHERE id BETWEEN %(first)s AND %(last)s AND status = ANY(%(statuses)s)
ORDER BY id
"""

_SIZES = """
SELECT id, pg_column_size(payload)
FROM {inbox}
WHERE id = ANY(%(ids)s) AND status = ANY(%(statuses)s)
ORDER BY id
"""

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg
    from psycopg import sql


_CLAIM = """
SELECT id, source, delivery_id, event_type, {payload}
FROM {inbox}
WHERE id = ANY(%(ids)s) AND status = ANY(%(statuses)s)
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

# A batch's events are claimed, applied and committed in chunks of at most this many events
# and stored payload bytes, so a run's memory and transactions stay bounded whatever the
# batch size, and entity rows appear as each chunk commits, not when the whole batch does.
CHUNK_EVENTS = 1000
CHUNK_BYTES = 4 * 1024 * 1024

_UPSERT = """
INSERT INTO {table} ({columns}, source, delivery_id, last_inbox_id, updated_at)
SELECT DISTINCT ON ({key}) {columns}, source, delivery_id, inbox_id, now()
FROM jsonb_to_recordset(%s::jsonb)
    AS r({typed}, source text, delivery_id text, inbox_id bigint)
ORDER BY {key}, inbox_id DESC
ON CONFLICT ({key}) DO UPDATE SET {updates}, source = EXCLUDED.source,
    delivery_id = EXCLUDED.delivery_id, last_inbox_id = EXCLUDED.last_inbox_id,
    updated_at = now()
WHERE {table}.last_inbox_id <= EXCLUDED.last_inbox_id
RETURNING (xmax = 0)
"""

_ARCHIVE = """
INSERT INTO {unknown} (source, delivery_id, event_type, payload, inbox_id)
SELECT source, delivery_id, event_type, payload, id FROM {inbox} WHERE id = ANY(%s)
ON CONFLICT (source, delivery_id) DO NOTHING
"""

_RECORD = """
UPDATE {inbox} AS i
SET status = o.status, reason = o.reason, route = %(route)s, run_id = %(run_id)s,
    processed_at = now()
FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS o(id bigint, status text, reason text)
WHERE i.id = o.id
"""


@dataclass
class BatchResult:
    """What one batch did, for run metadata and logs (never payloads)."""

    route: str
    requested: int
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    unrouted: int = 0
    inserted: int = 0
    updated: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def superseded(self) -> int:
        """Valid events whose entity already held (or the batch held) a newer event."""
        return self.processed - self.inserted - self.updated

    def metadata(self) -> dict[str, Any]:
        """Counts for the materialization, plus up to ten failure reasons by inbox id."""
        return {
            "route": self.route,
            "events_requested": self.requested,
            "events_claimed": self.claimed,
            "processed": self.processed,
            "failed": self.failed,
            "unrouted": self.unrouted,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "superseded": self.superseded,
            "skipped_not_claimable": self.requested - self.claimed,
            "first_failures": "\n".join(f"{i}: {r}" for i, r in self.failures[:10]) or "none",
        }


def _upsert_query(store: WebhookStore, processor: Processor) -> "sql.Composed":
    from psycopg import sql

    columns = list(processor.columns)
    return sql.SQL(_UPSERT).format(
        table=store.table(processor.table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        key=sql.SQL(", ").join(map(sql.Identifier, processor.key)),
        typed=sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))  # pyright: ignore[reportArgumentType]
            for c, t in processor.columns.items()
        ),
        updates=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in columns
            if c not in processor.key
        ),
    )


def _apply(
    conn: "psycopg.Connection",
    store: WebhookStore,
    processor: Processor,
    events: Sequence[tuple[Any, ...]],
    result: BatchResult,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    for inbox_id, source, delivery_id, event_type, payload in events:
        try:
            if not isinstance(payload, dict):
                raise MalformedEventError("payload is not a JSON object")
            row = processor.parse(event_type or "", payload)
        except (MalformedEventError, ValueError, TypeError) as exc:
            reason = f"{processor.name}: {reason_of(exc)}"
            outcomes.append({"id": inbox_id, "status": FAILED, "reason": reason})
            result.failures.append((inbox_id, reason))
            continue
        rows.append(row | {"source": source, "delivery_id": delivery_id, "inbox_id": inbox_id})
        outcomes.append({"id": inbox_id, "status": PROCESSED, "reason": None})
    if rows:
        cur = conn.execute(_upsert_query(store, processor), (json.dumps(rows, default=str),))
        inserted = [flag for (flag,) in cur.fetchall()]
        result.inserted += sum(inserted)
        result.updated += len(inserted) - sum(inserted)
    result.processed += len(rows)
    result.failed += len(outcomes) - len(rows)
    return outcomes


def batch_ids(
    conn: "psycopg.Connection",
    store: WebhookStore,
    route: str,
    first_id: int,
    last_id: int,
    *,
    statuses: Sequence[str] = (PENDING,),
) -> list[int]:
    """The events of ``route`` with ``first_id <= id <= last_id`` whose status is in ``statuses``.

    The sensor names a batch by this range rather than listing its ids, so a run's config stays
    a few bytes (an 8,000-id list cost about 0.14 CPU-s at each of the four places Dagster
    validates run config, on the critical path of every run). The range may also hold events
    of this route the sensor has not emitted yet (committed late, or a batch still waiting to
    fill): applying them early is harmless, since the later batch finds them no longer pending.
    """
    from psycopg import sql

    with conn.transaction():
        rows = conn.execute(
            sql.SQL(_MEMBERS).format(inbox=store.inbox),
            {
                "first": first_id,
                "last": last_id,
                "statuses": list(statuses),
                "with_action": store.action_types(),
            },
        ).fetchall()
    return [i for i, source, kind, action in rows if store.route(source, kind, action) == route]


def apply_batch(
    conn: "psycopg.Connection",
    store: WebhookStore,
    route: str,
    inbox_ids: Sequence[int],
    run_id: str,
    *,
    statuses: Sequence[str] = (PENDING,),
) -> BatchResult:
    """Apply the events among ``inbox_ids`` whose status is in ``statuses``, via ``route``.

    ``conn`` must not be inside a transaction: each chunk is one transaction of its own.
    """
    from psycopg import sql

    result = BatchResult(route=route, requested=len(inbox_ids))
    processor = PROCESSORS.get(route)
    if processor is None and route != UNKNOWN:
        raise ValueError(f"no processor named {route!r}")
    params = {"ids": list(inbox_ids), "statuses": list(statuses)}
    with conn.transaction():
        sizes = conn.execute(sql.SQL(_SIZES).format(inbox=store.inbox), params).fetchall()
    claim = sql.SQL(_CLAIM).format(
        inbox=store.inbox, payload=sql.SQL("payload" if processor else "NULL")
    )
    for ids in chunks(sizes):
        with conn.transaction():
            events = conn.execute(claim, params | {"ids": ids}).fetchall()
            result.claimed += len(events)
            if not events:
                continue
            if processor is None:
                outcomes = _archive(conn, store, events, result)
            else:
                outcomes = _apply(conn, store, processor, events, result)
            conn.execute(
                sql.SQL(_RECORD).format(inbox=store.inbox),
                {"route": route, "run_id": run_id, "outcomes": json.dumps(outcomes)},
            )
    return result


def chunks(sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
    """``(id, stored size)`` pairs cut into id lists of bounded count and bytes."""
    out: list[list[int]] = []
    ids: list[int] = []
    total = 0
    for inbox_id, size in sizes:
        if ids and (len(ids) == CHUNK_EVENTS or total + size > CHUNK_BYTES):
            out.append(ids)
            ids, total = [], 0
        ids.append(inbox_id)
        total += size
    if ids:
        out.append(ids)
    return out


def _archive(
    conn: "psycopg.Connection",
    store: WebhookStore,
    events: Sequence[tuple[Any, ...]],
    result: BatchResult,
) -> list[dict[str, Any]]:
    """Events no route handles: copied to the unknown-events table, marked unrouted."""
    from psycopg import sql

    ids = [e[0] for e in events]
    archive = sql.SQL(_ARCHIVE).format(unknown=store.table(UNKNOWN_TABLE), inbox=store.inbox)
    conn.execute(archive, (ids,))
    result.unrouted += len(ids)
    return [
        {"id": i, "status": UNROUTED, "reason": f"no route for {kind or '(no type)'} from {src}"}
        for i, src, _, kind, _ in events
    ]
