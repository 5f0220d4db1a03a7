"""Replay: re-route chosen inbox events through today's routing table and processors.

After a fix (a processor that now accepts a shape, a route added, a payload corrected in
the inbox), launch ``webhook_replay_job`` from the launchpad choosing events by ids, by
source and time window, and by outcome (``failed`` by default). Each chosen event is routed
again and applied in batches exactly like the sensor's runs, so a replay is idempotent:
only events still in one of the chosen statuses are claimed, and an entity row is never
overwritten by an older event.

No ``from __future__ import annotations`` here: Dagster reads the ``config`` annotations
at decoration time and cannot resolve them from strings.
"""

from datetime import datetime
from enum import Enum

import dagster as dg
from pydantic import Field, field_validator

from integration_patterns.defs.webhooks.batches import apply_batch
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.inbox import FAILED, PENDING, PROCESSED, STATUSES, UNROUTED
from integration_patterns.resources.postgres import PostgresResource


class Outcome(Enum):
    """An inbox status a replay can choose events by (the launchpad offers these)."""

    pending = PENDING
    processed = PROCESSED
    failed = FAILED
    unrouted = UNROUTED


class ReplayConfig(dg.Config):
    """Which events to replay; every given criterion must match (none: all in ``statuses``)."""

    inbox_ids: list[int] = Field(
        default=[], description="webhook_inbox ids to replay (empty: any id)."
    )
    source: str = Field(default="", description="Only events of this source (empty: any).")
    received_after: str = Field(
        default="", description="Only events received at or after this ISO 8601 time."
    )
    received_before: str = Field(
        default="", description="Only events received before this ISO 8601 time."
    )
    statuses: list[Outcome] = Field(
        # Dagster's config schema wants the enum's value as the default, not the member.
        default=[FAILED],  # pyright: ignore[reportAssignmentType]
        description=f"Only events whose outcome is one of these ({', '.join(STATUSES)}).",
    )
    max_events: int = Field(default=100_000, ge=1, description="Most events one replay takes.")

    @field_validator("received_after", "received_before")
    @classmethod
    def _iso(cls, value: str) -> str:
        if value:
            datetime.fromisoformat(value)
        return value


_SELECT = """
SELECT id, source, event_type, payload->>'action'
FROM {inbox}
WHERE status = ANY(%(statuses)s)
  AND (cardinality(%(ids)s::bigint[]) = 0 OR id = ANY(%(ids)s))
  AND (%(source)s = '' OR source = %(source)s)
  AND (%(after)s::timestamptz IS NULL OR received_at >= %(after)s::timestamptz)
  AND (%(before)s::timestamptz IS NULL OR received_at < %(before)s::timestamptz)
ORDER BY id
LIMIT %(limit)s
"""


@dg.op(tags={"webhook/route": "replay"})
def replay_webhook_events(
    context: dg.OpExecutionContext,
    config: ReplayConfig,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.Output[int]:
    """Route the chosen events again and apply them batch by batch; per-route counts."""
    from psycopg import sql

    store = webhook_store
    statuses = [Outcome(s).value for s in config.statuses]
    if not statuses:
        raise dg.Failure("statuses is empty: choose at least one outcome to replay")
    params = {
        "statuses": statuses,
        "ids": config.inbox_ids,
        "source": config.source,
        "after": config.received_after or None,
        "before": config.received_before or None,
        "limit": config.max_events,
    }
    with postgres.get_connection() as conn:
        store.ensure_tables(conn)
        chosen = conn.execute(sql.SQL(_SELECT).format(inbox=store.inbox), params).fetchall()
        conn.commit()
        by_route: dict[str, list[int]] = {}
        for inbox_id, source, event_type, action in chosen:
            by_route.setdefault(store.route(source, event_type, action), []).append(inbox_id)
        totals: dict[str, dict[str, int]] = {}
        size = max(1, store.max_events_per_run)
        for route, ids in sorted(by_route.items()):
            for start in range(0, len(ids), size):
                result = apply_batch(
                    conn,
                    store,
                    route,
                    ids[start : start + size],
                    context.run_id,
                    statuses=statuses,
                )
                counts = totals.setdefault(route, {})
                for name in ("claimed", "processed", "failed", "unrouted"):
                    counts[name] = counts.get(name, 0) + getattr(result, name)
                for inbox_id, reason in result.failures[:10]:
                    context.log.warning(f"inbox id {inbox_id} still fails: {reason}")
    context.log.info(f"replayed {len(chosen)} event(s): {totals}")
    metadata = {"events_chosen": len(chosen)} | {
        f"{route}_{name}": n for route, counts in totals.items() for name, n in counts.items()
    }
    return dg.Output(len(chosen), metadata=metadata)


@dg.job(
    executor_def=dg.in_process_executor,
    description="Re-route chosen webhook inbox events (by ids, source and time window, "
    "outcome) through today's routing table and processors, idempotently.",
)
def webhook_replay_job() -> None:
    """One op: select, route and apply."""
    replay_webhook_events()
