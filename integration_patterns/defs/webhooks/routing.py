"""The inbox sensor: one run per new inbox event, routed to its job by event type.

The cursor is the ``(txid, id)`` of the last row emitted. Rows are read in that order and
only from transactions older than every transaction still running
(``pg_snapshot_xmin(pg_current_snapshot())``): such rows can no longer be joined by a row
that sorts before them, so advancing the cursor past them never skips a late commit. Each
request's ``run_key`` is ``<source>:<delivery id>``, so even a cursor lost and rebuilt from
zero would not start an event twice. A tick emits at most ``max_runs_per_tick`` requests and
the cursor moves only over the rows it emitted.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
from psycopg import sql

from integration_patterns.defs.webhooks.processors import (
    webhook_orders,
    webhook_orders_job,
    webhook_payments,
    webhook_payments_job,
    webhook_unknown_events,
    webhook_unknown_job,
    webhook_users,
    webhook_users_job,
)
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.resources.postgres import PostgresResource

# event type -> (job, the asset whose config receives the event)
ROUTES: dict[str, tuple[str, str]] = {
    "order.created": (webhook_orders_job.name, webhook_orders.key.path[-1]),
    "payment.received": (webhook_payments_job.name, webhook_payments.key.path[-1]),
    "user.updated": (webhook_users_job.name, webhook_users.key.path[-1]),
}
UNKNOWN_ROUTE = (webhook_unknown_job.name, webhook_unknown_events.key.path[-1])

_PENDING = """
SELECT id, txid, source, delivery_id, event_type, payload, received_at
FROM {inbox}
WHERE (txid, id) > (%(txid)s, %(id)s)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY txid, id
LIMIT %(limit)s
"""

# Rows past the cursor that the snapshot horizon still holds back, and that horizon: a
# long-running write transaction anywhere on the server delays routing, and the tick says so.
_HELD_BACK = """
SELECT count(*), pg_snapshot_xmin(pg_current_snapshot())::text
FROM {inbox}
WHERE (txid, id) > (%(txid)s, %(id)s)
"""


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    """``(txid, id)`` of the last emitted row; ``(0, 0)`` before the first tick."""
    if not cursor:
        return (0, 0)
    state = json.loads(cursor)
    return (int(state["txid"]), int(state["id"]))


def run_request_for(row: tuple[Any, ...]) -> dg.RunRequest:
    """The run that processes one inbox row."""
    inbox_id, _txid, source, delivery_id, event_type, payload, received_at = row
    job_name, asset_name = ROUTES.get(event_type or "", UNKNOWN_ROUTE)
    event = {
        "inbox_id": inbox_id,
        "source": source,
        "delivery_id": delivery_id,
        "event_type": event_type or "",
        "received_at": received_at.isoformat(),
        "payload": payload,
    }
    return dg.RunRequest(
        run_key=f"{source}:{delivery_id}",
        job_name=job_name,
        run_config={"ops": {asset_name: {"config": event}}},
        tags={"webhook/source": source, "webhook/event_type": event_type or "(none)"},
    )


@dg.sensor(
    jobs=[webhook_orders_job, webhook_payments_job, webhook_users_job, webhook_unknown_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,  # webhooks should flow without a click
    description="Routes new webhook_inbox events to their job, one run per event.",
)
def webhook_inbox_router(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.SensorResult | dg.SkipReason:
    """Emit one run request per inbox row past the cursor (at most the per-tick cap)."""
    txid, last_id = parse_cursor(context.cursor)
    with postgres.get_connection() as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s)", (f'"{webhook_store.schema_name}".webhook_inbox',)
        ).fetchone()
        if exists is None or exists[0] is None:
            return dg.SkipReason("webhook_inbox does not exist yet: start the webhook receiver")
        rows = conn.execute(
            sql.SQL(_PENDING).format(inbox=webhook_store.inbox),
            {"txid": txid, "id": last_id, "limit": webhook_store.max_runs_per_tick},
        ).fetchall()
        held = None
        if not rows:
            held = conn.execute(
                sql.SQL(_HELD_BACK).format(inbox=webhook_store.inbox),
                {"txid": txid, "id": last_id},
            ).fetchone()
    if not rows:
        if held and held[0]:
            return dg.SkipReason(
                f"{held[0]} webhook event(s) held back until transactions older than xid "
                f"{held[1]} finish (a long-running transaction on the server delays routing)"
            )
        return dg.SkipReason("no new webhook events")
    requests = [run_request_for(row) for row in rows]
    last = rows[-1]
    context.log.info(f"routing {len(requests)} webhook event(s), up to inbox id {last[0]}")
    return dg.SensorResult(
        run_requests=requests, cursor=json.dumps({"txid": last[1], "id": last[0]})
    )
