"""The inbox sensor: pending events become batches per route, and the due batches one run.

Each tick reads new inbox rows (metadata only, never payloads) in ``(txid, id)`` order, and
only from transactions older than every transaction still running
(``pg_snapshot_xmin(pg_current_snapshot())``): such rows can no longer be joined by a row
that sorts before them, so a late commit is never skipped. Each row is routed by the
routing table, and each route's rows are cut into batches of ``max_events_per_run`` events
or ``max_batch_bytes`` of stored payload, whichever comes first; a last batch short of both
waits until its oldest event has waited ``max_wait_seconds``. The batches due in a tick share
a run (``webhook_batch_job``, one step per route selected; at most ``max_routes_per_run``
routes, 0 = all): a run costs seconds of process start and code load whatever it carries,
and one run per route per batch multiplied that by the number of busy routes, which on a
2-core machine doubled every event's latency (``bench/webhook_e2e.py``). A route with a
second full batch in the same tick gets it in a second run.

A route whose last batch run has not started yet (queued behind the run queue, or still
starting) gets no new run: its events keep accumulating into the next batch, so when runs are
slow to start, batches grow instead of queued runs piling up (a run costs seconds of the
machine however few events it carries).

The cursor keeps a low-water mark (every row up to it was emitted) plus, per route, the
last row emitted, because a held batch of one route must not hold back the rows of another.
The ``run_key`` names each route's batch (``<route>:<first id>-<last id>:<count>``, joined by
``+``), so a tick evaluated twice never launches a batch twice. The run config holds each
route's id range only (its step applies the route's events in it that are still pending);
should a re-evaluated tick cut a batch differently, or two ranges of a route overlap, the
processors claim events with ``SKIP LOCKED`` in ``pending`` status, so no event is applied
twice either. Every ``REPORT_SECONDS`` the tick also reports each route's backlog as an
observation and check results, without launching a run.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from integration_patterns.defs.webhooks.assets import BATCH_JOB, ROUTE_ASSETS
from integration_patterns.defs.webhooks.backlog import RouteBacklog, backlog, check_evaluations
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.resources.postgres import PostgresResource

SENSOR_NAME = "webhook_inbox_router"
REPORT_SECONDS = 30.0
STUCK_RUN_SECONDS = 600
# A tick reads at most this many batches' worth of rows (metadata only), and never more
# than SCAN_ROWS (about 100 bytes each in the sensor's memory).
SCAN_BATCHES = 10
SCAN_ROWS = 100_000

_NEW_ROWS = """
SELECT id, txid, source, event_type,
       CASE WHEN event_type = ANY(%(with_action)s) THEN payload->>'action' END,
       extract(epoch FROM now() - received_at)::float8,
       pg_column_size(payload)
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

Position = tuple[int, int]  # (txid, id)


@dataclass
class RouterCursor:
    """Low-water mark, last position emitted per route, and when backlog was reported."""

    mark: Position = (0, 0)
    routes: dict[str, Position] = field(default_factory=dict)
    reported_at: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> "RouterCursor":
        """From the stored cursor; an empty one starts at the beginning of the inbox."""
        if not text:
            return cls()
        state = json.loads(text)
        return cls(
            mark=(int(state["txid"]), int(state["id"])),
            routes={r: (int(p[0]), int(p[1])) for r, p in state.get("routes", {}).items()},
            reported_at=float(state.get("reported_at", 0.0)),
        )

    def dump(self) -> str:
        """The cursor text (routes wholly behind the mark are dropped)."""
        routes = {r: list(p) for r, p in sorted(self.routes.items()) if p > self.mark}
        state = {"txid": self.mark[0], "id": self.mark[1], "routes": routes}
        return json.dumps(state | {"reported_at": round(self.reported_at, 1)})


@dataclass(frozen=True)
class InboxEvent:
    """What routing reads of one row."""

    inbox_id: int
    txid: int
    route: str
    age_seconds: float
    size: int = 0  # payload bytes as stored (pg_column_size: read without de-TOASTing)

    @property
    def position(self) -> Position:
        """Where the row sorts in the inbox's ``(txid, id)`` order."""
        return (self.txid, self.inbox_id)


def cut(pending: list[InboxEvent], store: WebhookStore) -> list[tuple[list[InboxEvent], bool]]:
    """One route's pending events in batches, each with whether it is full.

    A batch ends at ``max_events_per_run`` events or before the event that would take it
    over ``max_batch_bytes`` (an event over the cap on its own makes a batch of one).
    """
    size, cap = max(1, store.max_events_per_run), max(1, store.max_batch_bytes)
    batches: list[tuple[list[InboxEvent], bool]] = []
    batch: list[InboxEvent] = []
    total = 0
    for event in pending:
        if batch and total + event.size > cap:
            batches.append((batch, True))
            batch, total = [], 0
        batch.append(event)
        total += event.size
        if len(batch) == size or total >= cap:
            batches.append((batch, True))
            batch, total = [], 0
    if batch:
        batches.append((batch, False))
    return batches


def plan_batches(
    events: list[InboxEvent],
    cursor: RouterCursor,
    store: WebhookStore,
    busy: frozenset[str] = frozenset(),
) -> tuple[list[tuple[str, list[InboxEvent]]], RouterCursor]:
    """Cut the scanned events into due batches; the cursor after emitting them.

    Routes in ``busy`` (a batch run not started yet) emit nothing this time.
    """
    by_route: dict[str, list[InboxEvent]] = {}
    for event in events:
        if event.position > cursor.routes.get(event.route, cursor.mark):
            by_route.setdefault(event.route, []).append(event)
    due: list[tuple[str, list[InboxEvent]]] = []
    held: list[Position] = []
    routes = dict(cursor.routes)
    for route, pending in by_route.items():
        for batch, full in cut(pending, store):
            waiting = not full and batch[0].age_seconds < store.max_wait_seconds
            if route in busy or waiting:
                held.append(batch[0].position)
                break
            due.append((route, batch))
            routes[route] = batch[-1].position
    if held:
        first_held = min(held)
        before = [e.position for e in events if e.position < first_held]
        mark = before[-1] if before else cursor.mark
    else:
        mark = events[-1].position if events else cursor.mark
    return due, RouterCursor(mark=max(mark, cursor.mark), routes=routes)


def runs_for(
    due: list[tuple[str, list[InboxEvent]]], max_routes: int = 0
) -> list[dict[str, list[InboxEvent]]]:
    """Due batches grouped into runs: the k-th batch of every route shares the k-th run.

    A run costs seconds of process start and code load whatever it carries, so the routes'
    batches share a run rather than each starting its own; ``max_routes`` (0 = no limit)
    caps how many routes one run takes.
    """
    rounds: list[dict[str, list[InboxEvent]]] = []
    taken: dict[str, int] = {}
    for route, batch in due:
        k = taken.get(route, 0)
        taken[route] = k + 1
        if k == len(rounds):
            rounds.append({})
        rounds[k][route] = batch
    if max_routes <= 0:
        return rounds
    return [
        {r: batches[r] for r in list(batches)[i : i + max_routes]}
        for batches in rounds
        for i in range(0, len(batches), max_routes)
    ]


def run_request(batches: dict[str, list[InboxEvent]]) -> dg.RunRequest:
    """The run that applies one batch of each of these routes: id ranges, never payloads.

    The run key names every route's range and count (``orders:1-9:5+payments:2-8:4``).
    """
    routes = sorted(batches)
    ranges = {
        r: (min(e.inbox_id for e in b), max(e.inbox_id for e in b)) for r, b in batches.items()
    }
    return dg.RunRequest(
        run_key="+".join(f"{r}:{ranges[r][0]}-{ranges[r][1]}:{len(batches[r])}" for r in routes),
        job_name=BATCH_JOB.name,
        asset_selection=[ROUTE_ASSETS[r].key for r in routes],
        # No checks: selecting assets would otherwise add each one's backlog checks as a step
        # of every batch run; the sensor reports backlog itself every REPORT_SECONDS.
        asset_check_keys=[],
        run_config={
            "ops": {
                ROUTE_ASSETS[r].key.path[-1]: {
                    "config": {"first_id": ranges[r][0], "last_id": ranges[r][1]}
                }
                for r in routes
            }
        },
        tags={
            "webhook/routes": ",".join(routes),
            "webhook/events": str(sum(len(b) for b in batches.values())),
        },
    )


_NOT_STARTED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]


def routes_not_started(context: dg.SensorEvaluationContext) -> frozenset[str]:
    """Routes with a batch run this sensor requested that has not started yet.

    Only runs created in the last ``STUCK_RUN_SECONDS`` count: a run that never starts (its
    launch was lost) must not stop its route for good. Its events stay pending, the
    ``backlog_flowing`` check fails, and ``webhook_replay_job`` with ``statuses: [pending]``
    applies them.
    """
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # evaluated without an instance (unit tests)
        return frozenset()
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=_NOT_STARTED,
            tags={"dagster/sensor_name": SENSOR_NAME},
            created_after=datetime.now(UTC) - timedelta(seconds=STUCK_RUN_SECONDS),
        )
    )
    return frozenset(r for run in runs for r in run.tags.get("webhook/routes", "").split(","))


def _backlog_events(conn: Any, store: WebhookStore) -> list[Any]:
    figures = backlog(conn, store)
    events: list[Any] = []
    for route, asset in ROUTE_ASSETS.items():
        route_figures = figures.get(route, RouteBacklog())
        events.append(dg.AssetObservation(asset_key=asset.key, metadata=route_figures.metadata()))
        events += check_evaluations(asset.key, route_figures)
    return events


@dg.sensor(
    name=SENSOR_NAME,
    jobs=[BATCH_JOB],
    # Ticks are cheap (one indexed scan of metadata); each second of interval is added to
    # the latency of the events that just missed a tick.
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,  # webhooks should flow without a click
    description="Routes pending webhook_inbox events to their processors in batches (up to "
    "max_events_per_run events or max_wait_seconds of waiting per route), one run for the "
    "batches of all routes due.",
)
def webhook_inbox_router(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.SensorResult | dg.SkipReason:
    """Emit the batches that are due; report backlog every ``REPORT_SECONDS``."""
    from psycopg import sql

    cursor = RouterCursor.parse(context.cursor)
    store = webhook_store
    with postgres.get_connection() as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s)", (f'"{store.schema_name}".webhook_inbox',)
        ).fetchone()
        if exists is None or exists[0] is None:
            return dg.SkipReason("webhook_inbox does not exist yet: start the webhook receiver")
        rows = conn.execute(
            sql.SQL(_NEW_ROWS).format(inbox=store.inbox),
            {
                "txid": cursor.mark[0],
                "id": cursor.mark[1],
                "limit": min(max(1, store.max_events_per_run) * SCAN_BATCHES, SCAN_ROWS),
                "with_action": store.action_types(),
            },
        ).fetchall()
        held_back = None
        if not rows:
            held_back = conn.execute(
                sql.SQL(_HELD_BACK).format(inbox=store.inbox),
                {"txid": cursor.mark[0], "id": cursor.mark[1]},
            ).fetchone()
        report = time.time() - cursor.reported_at >= REPORT_SECONDS
        asset_events = _backlog_events(conn, store) if report else []
    events = [
        InboxEvent(row[0], row[1], store.route(row[2], row[3], row[4]), row[5], row[6])
        for row in rows
    ]
    due, after = plan_batches(events, cursor, store, routes_not_started(context))
    after.reported_at = time.time() if report else cursor.reported_at
    requests = [run_request(b) for b in runs_for(due, store.max_routes_per_run)]
    if requests:
        counts = ", ".join(f"{route} {len(batch)}" for route, batch in due)
        context.log.info(f"routing {len(due)} batch(es) in {len(requests)} run(s): {counts}")
    if not requests and not asset_events and after.dump() == cursor.dump():
        if held_back and held_back[0]:
            return dg.SkipReason(
                f"{held_back[0]} webhook event(s) held back until transactions older than "
                f"xid {held_back[1]} finish (a long-running transaction delays routing)"
            )
        waiting = (len(events) and "events waiting to fill a batch") or "no new webhook events"
        return dg.SkipReason(waiting)
    return dg.SensorResult(run_requests=requests, cursor=after.dump(), asset_events=asset_events)
