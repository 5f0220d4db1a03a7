"""Webhook events applied per second, end to end, against the rate they were accepted.

Deployed shape: the receiver (uvicorn), a Dagster webserver and ``dagster-daemon`` on storage
of their own, only the webhook routing sensor running, a private inbox schema. Signed
deliveries (four routes over two signature schemes, 1% malformed) are posted at the
receiver's full rate for ``SECONDS``; then the benchmark waits until no event is pending.

- accepted rate: inbox rows / (last - first ``received_at``) while posting;
- applied rate: events with an outcome / (last ``processed_at`` - first ``received_at``);
- "processed vs accepted" = applied / accepted (1.0 = the pipeline keeps up and the tail
  is short; below 1 it falls behind or the last batch waits long);
- latency per event = ``processed_at - received_at`` (202 to entity row: both are set by
  the transactions that stored the event and applied it), p50/p95;
- where the time goes: per event, waiting until its run started (sensor interval, batch
  wait, run queue, run start) and inside the run; runs, events per run, run wall time.

One repetition (a minute of load plus the drain): the machine is shared, so quote the
figures with the load average printed beside them.
"""

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from psycopg import sql

from bench.report import Comparison, write
from devstack.dagster_graphql import graphql
from devstack.webhook_fixtures import (
    new_standard_secret,
    post_raw,
    receiver_env,
    running_receiver,
    sample_event,
    signed_delivery,
)
from devstack.webhook_stack import webhook_stack
from integration_patterns.resources.postgres import PostgresResource

SECONDS = 60
DRAIN_TIMEOUT = 480  # then the figures cover the events applied so far
CONNECTIONS = 16
TYPES = ["order.created", "payment.received", "user.updated", "invoice.voided"]
SOURCES = {"std": ("standard", [new_standard_secret()]), "shop": ("hmac", [uuid.uuid4().hex])}


def delivery(n: int, run: str) -> tuple[str, bytes, dict[str, str]]:
    """The n-th delivery: round-robin types and sources, every 100th malformed."""
    source = ("std", "shop")[n % 2]
    if n % 100 == 99:
        payload = {"id": f"{run}-{n}", "type": "order.created", "data": {"total": 1}}
    else:
        payload = sample_event(TYPES[n % 4], n, delivery_id=f"{run}-{n}")
    return (source, *signed_delivery(*SOURCES[source], payload))


async def post_for(url: str, seconds: float, run: str) -> int:
    """POST deliveries over CONNECTIONS keep-alive connections until ``seconds`` pass."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                source, body, headers = delivery(next(counter), run)
                status, _ = await post_raw(reader, writer, f"/webhooks/{source}", body, headers)
                accepted += status == 202
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return accepted


_FIGURES = """
SELECT count(processed_at),
       extract(epoch FROM max(received_at) - min(received_at)),
       extract(epoch FROM max(processed_at) - min(received_at)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)),
       count(*) FILTER (WHERE status = 'failed'),
       count(DISTINCT run_id),
       count(*)
FROM {inbox}
"""
_RUNS = """
{ runsOrError { ... on Runs { results { runId creationTime startTime endTime } } } }
"""
_LOGS = """
query L($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
  events { __typename ... on MessageEvent { timestamp } } } } }
"""
_PHASES = {  # event type -> the phase it ends, in order (the daemon logs no RunDequeued)
    "RunStartingEvent": "queued",
    "RunStartEvent": "launching",
    "ExecutionStepStartEvent": "run_setup",
    "RunSuccessEvent": "applying",
}
_PER_RUN = "SELECT run_id, count(*), min(received_at), max(received_at) FROM {inbox} GROUP BY 1"


def wait_drained(
    postgres: PostgresResource, inbox: sql.Composable, timeout: float
) -> tuple[float, int]:
    """Seconds until no event is pending, and how many still are after ``timeout``."""
    started = time.monotonic()
    query = sql.SQL("SELECT count(*) FROM {} WHERE status = 'pending'").format(inbox)
    while True:
        with postgres.get_connection() as conn:
            (pending,) = conn.execute(query).fetchone()  # type: ignore[misc]
        if not pending or time.monotonic() - started > timeout:
            return time.monotonic() - started, pending
        time.sleep(1)


def run_phases(url: str, run_id: str, run: dict[str, Any]) -> dict[str, float]:
    """Seconds a run spent in each phase, from its events.

    Queued (created to STARTING: the run queue and the daemon's dequeue interval), launching
    (to RUN_START: process start and code load), run setup (to the first step's start:
    instance, resources) and applying (to the run's success). A phase whose closing event
    is missing is left out rather than counted as zero.
    """
    events = graphql(url, _LOGS, {"id": run_id})["logsForRun"]["events"]
    at = {e["__typename"]: int(e["timestamp"]) / 1000 for e in reversed(events)}
    phases, previous = {}, float(run["creationTime"])
    for kind, phase in _PHASES.items():
        if kind in at:
            phases[phase] = at[kind] - previous
            previous = at[kind]
    return phases


def main() -> None:
    """Run the load, wait for the drain, write ``bench/results/webhook_e2e.json``."""
    postgres = PostgresResource.from_env()
    schema = f"wh_e2e_{uuid.uuid4().hex[:8]}"
    inbox = sql.Identifier(schema, "webhook_inbox")
    env: dict[str, str] = {}  # the deployed defaults (.env.example): batch limits, wait
    load = os.getloadavg()
    try:
        with (
            running_receiver(receiver_env(SOURCES, schema=schema)) as receiver,
            webhook_stack(schema, env=env) as (url, _daemon),
        ):
            accepted = asyncio.run(post_for(receiver.url, SECONDS, schema))
            drain, pending = wait_drained(postgres, inbox, timeout=DRAIN_TIMEOUT)
            all_runs = {r["runId"]: r for r in graphql(url, _RUNS)["runsOrError"]["results"]}
            phases = {run_id: run_phases(url, run_id, run) for run_id, run in all_runs.items()}
        with postgres.get_connection() as conn:
            count, accept_window, apply_window, p50, p95, failed, n_runs, stored = conn.execute(
                sql.SQL(_FIGURES).format(inbox=inbox)
            ).fetchone()  # type: ignore[misc]
            per_run = conn.execute(sql.SQL(_PER_RUN).format(inbox=inbox)).fetchall()
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        postgres.close()
    accepted_rate = stored / float(accept_window)
    applied_rate = count / float(apply_window)
    waits, created, launch, inside, per_1k, sizes = [], [], [], [], [], []
    for run_id, events, _first_received, last_received in per_run:
        run = all_runs.get(run_id)
        if not run or not run["startTime"] or not run["endTime"]:
            continue
        newest = last_received.timestamp()
        waits.append(run["startTime"] - newest)
        created.append(run["creationTime"] - newest)  # batch wait + sensor tick
        launch.append(run["startTime"] - run["creationTime"])  # run queue + process start
        inside.append(run["endTime"] - run["startTime"])
        per_1k.append((run["endTime"] - run["startTime"]) / events * 1000)
        sizes.append(events)

    by_phase: dict[str, list[float]] = {phase: [] for phase in _PHASES.values()}
    for run_phase in phases.values():
        for phase, seconds in run_phase.items():
            by_phase[phase].append(seconds)

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2) if values else 0

    write(
        "webhook_e2e",
        [
            Comparison(
                name="processed vs accepted",
                unit="events/s",
                ours=round(applied_rate, 1),
                baseline_name="accepted",
                baseline=round(accepted_rate, 1),
                goal=0.5,
                extra={
                    "events_stored": stored,
                    "events_applied": count,
                    "still_pending_at_end": pending,
                    "accepted_202": accepted,
                    "failed_malformed": failed,
                    "latency_p50_s": round(float(p50), 2),
                    "latency_p95_s": round(float(p95), 2),
                    "latency_goal_p95_s": 30,
                    "drain_after_load_s": round(drain, 1),
                    "runs": n_runs,
                    "events_per_run_median": median(sizes),
                    "run_wall_s_median": median(inside),
                    "run_wall_s_per_1k_events_median": median(per_1k),
                    "newest_event_to_run_created_s_median": median(created),
                    "run_created_to_started_s_median": median(launch),
                    "newest_event_to_run_start_s_median": median(waits),
                    **{f"run_{phase}_s_median": median(v) for phase, v in by_phase.items() if v},
                    "load_average_at_start": [round(x, 1) for x in load],
                    "load": f"{SECONDS}s, {CONNECTIONS} keep-alive connections, 1% malformed",
                },
            )
        ],
    )
