"""``make demo``'s webhook section: signed events in, batched per route, due batches in one run.

Sends one signed event of each routed type (plus an unknown type, a duplicate and a forged
delivery) to a running receiver, evaluates the routing sensor as the daemon would, and
executes the batch runs it requests in the given instance, skipping run keys the instance
already has, as the daemon does; then shows each event's outcome from the inbox. The
receiver's sources and secrets come from the same environment variables the receiver reads
(``WEBHOOK_SOURCES``, ``WEBHOOK_SECRET_<NAME>`` or ``WEBHOOK_SECRETS_<NAME>``).

Standalone: ``python -m devstack.demo_webhooks`` starts a receiver on a
free port for the duration.
"""

import os
import sys
import time

import dagster as dg
import httpx
from psycopg import sql

from devstack.webhook_fixtures import (
    running_receiver,
    sample_event,
    signed_delivery,
)
from integration_patterns.defs.webhooks.routing import RouterCursor, webhook_inbox_router
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.services.webhook_receiver.config import (
    settings_from_env,
    source_secrets,
)

EVENT_TYPES = ["order.created", "payment.received", "user.updated", "invoice.voided"]


def _inbox_position(postgres: PostgresResource, store: WebhookStore) -> str | None:
    """A sensor cursor just past the inbox's current end, so the demo routes only its own."""
    with postgres.get_connection() as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s)", (f'"{store.schema_name}".webhook_inbox',)
        ).fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute(
            sql.SQL("SELECT txid, id FROM {} ORDER BY txid DESC, id DESC LIMIT 1").format(
                store.inbox
            )
        ).fetchone()
    return None if row is None else RouterCursor(mark=(row[0], row[1])).dump()


def _send(receiver_url: str, lines: list[str]) -> set[str]:
    """POST the sample deliveries; return the delivery ids that should be routed."""
    settings = settings_from_env()
    if not settings.sources:
        raise RuntimeError("WEBHOOK_SOURCES is empty: configure the receiver's sources first")
    names = sorted(settings.sources)
    expected: set[str] = set()
    stamp = int(time.time())
    with httpx.Client(base_url=receiver_url, timeout=10) as client:
        for n, event_type in enumerate(EVENT_TYPES):
            source = settings.sources[names[n % len(names)]]
            _, secrets = source_secrets(os.environ, source.name)
            payload = sample_event(event_type, n, delivery_id=f"demo-{stamp}-{n}")
            body, headers = signed_delivery(source.scheme, secrets, payload)
            response = client.post(f"/webhooks/{source.name}", content=body, headers=headers)
            lines.append(
                f"  POST /webhooks/{source.name:<8} {event_type:<17} ({source.scheme}) -> "
                f"{response.status_code} {response.json()}"
            )
            if response.status_code == 202:
                expected.add(payload["id"])
            if n == 0:
                again = client.post(f"/webhooks/{source.name}", content=body, headers=headers)
                lines.append(f"  same delivery again                -> {again.status_code}")
                forged = client.post(
                    f"/webhooks/{source.name}",
                    content=body.replace(b"ord-", b"ORD-"),
                    headers=headers,
                )
                lines.append(f"  tampered body                      -> {forged.status_code}")
    return expected


def run_demo(instance: dg.DagsterInstance, receiver_url: str) -> str:
    """Send signed sample events, route them with the sensor, run the jobs; describe it all."""
    from integration_patterns.definitions import defs as load_defs

    defs = load_defs()
    wired = defs.resources or {}
    postgres, store = wired["postgres"], wired["webhook_store"]
    assert isinstance(postgres, PostgresResource) and isinstance(store, WebhookStore)
    lines = [f"webhooks: receiver at {receiver_url}"]
    with dg.build_resources({"postgres": postgres, "webhook_store": store}) as resources:
        cursor = _inbox_position(resources.postgres, resources.webhook_store)
        expected = _send(receiver_url, lines)
        requests: list[dg.RunRequest] = []
        deadline = time.monotonic() + 30
        while _batched(requests) < len(expected) and time.monotonic() < deadline:
            with dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                resources={"postgres": postgres, "webhook_store": store},
            ) as context:
                result = webhook_inbox_router(context)
            if isinstance(result, dg.SensorResult):
                requests += result.run_requests or []
                cursor = result.cursor
            time.sleep(0.5)
    lines.append(
        f"  sensor webhook_inbox_router requested {len(requests)} batch run(s) "
        f"for {_batched(requests)} event(s)"
    )
    for request in requests:
        run_key = request.run_key or ""
        seen = dg.RunsFilter(
            tags={"dagster/run_key": run_key, "dagster/sensor_name": webhook_inbox_router.name}
        )
        if instance.get_runs(filters=seen, limit=1):
            lines.append(f"  {run_key}: already run, skipped (run keys are unique)")
            continue
        job_name = request.job_name or ""
        job = defs.resolve_job_def(job_name).get_subset(
            asset_selection=set(request.asset_selection or []),
            asset_check_selection=set(request.asset_check_keys or []),
        )
        result = job.execute_in_process(
            run_config=request.run_config,
            instance=instance,
            tags={
                **request.tags,
                "dagster/run_key": run_key,
                "dagster/sensor_name": webhook_inbox_router.name,
            },
            raise_on_error=False,
        )
        lines.append(
            f"  run {result.run_id[:8]} {job_name} {run_key}: "
            f"{'success' if result.success else 'FAILED'}"
        )
        for event in result.get_asset_materialization_events():
            meta = event.step_materialization_data.materialization.metadata
            counts = ", ".join(
                f"{meta[k].value} {k}" for k in ("processed", "failed", "unrouted") if k in meta
            )
            lines.append(f"    {meta['route'].value:<8} {counts}")
    with (
        dg.build_resources({"postgres": postgres, "webhook_store": store}) as resources,
        resources.postgres.get_connection() as conn,
    ):
        outcomes = conn.execute(
            sql.SQL(
                "SELECT delivery_id, event_type, status, route, coalesce(reason, '') FROM {} "
                "WHERE delivery_id = ANY(%s) ORDER BY id"
            ).format(resources.webhook_store.inbox),
            (sorted(expected),),
        ).fetchall()
    for delivery_id, event_type, status, route, reason in outcomes:
        lines.append(f"  {delivery_id:<20} {event_type:<17} -> {route:<8} {status} {reason}")
    return "\n".join(lines)


def _batched(requests: list[dg.RunRequest]) -> int:
    return sum(int(r.tags["webhook/events"]) for r in requests)


def main() -> int:
    """Start a receiver for the duration and run the demo against it."""
    with running_receiver({}) as receiver:
        sys.stdout.write(run_demo(dg.DagsterInstance.get(), receiver.url) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
