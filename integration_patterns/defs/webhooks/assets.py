"""One asset and pair of backlog checks per route, built from the processor table; one batch job.

Each run applies one batch: the routing sensor selects the routes with events due and names
each one's inbox id range in the run config (never payloads). Each route's asset applies the
route's pending events in its range set-based and records each event's outcome in the inbox
(see ``batches.py``). A step that fails as a whole (the database went away) is retried by its
retry policy, and the other routes' steps go on; each chunk of a batch is one transaction,
so the retry applies just what is still pending.

No ``from __future__ import annotations`` here: Dagster reads the ``config`` annotations
at decoration time and cannot resolve them from strings.
"""

import dagster as dg
from pydantic import Field

from integration_patterns.defs.owners import INTEGRATIONS
from integration_patterns.defs.webhooks.backlog import RouteBacklog, backlog, check_results
from integration_patterns.defs.webhooks.batches import apply_batch, batch_ids
from integration_patterns.defs.webhooks.external import GROUP, webhook_inbox
from integration_patterns.defs.webhooks.processors import PROCESSORS
from integration_patterns.defs.webhooks.routes import UNKNOWN
from integration_patterns.defs.webhooks.store import UNKNOWN_TABLE, WebhookStore
from integration_patterns.resources.postgres import PostgresResource

RETRY = dg.RetryPolicy(max_retries=4, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class WebhookBatch(dg.Config):
    """The batch a run applies, named by an inbox id range.

    No payload (nor even a list of ids) reaches run storage or the UI.
    """

    first_id: int = Field(description="Lowest webhook_inbox.id of the batch.")
    last_id: int = Field(
        description="Highest webhook_inbox.id of the batch: the run applies this route's "
        "events between first_id and last_id (inclusive) that are still pending."
    )


def asset_name(route: str) -> str:
    """The asset a route materializes (``webhook_<table suffix>``)."""
    return UNKNOWN_TABLE if route == UNKNOWN else PROCESSORS[route].table


def _processor_asset(route: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=asset_name(route),
        group_name=GROUP,
        kinds={"postgres"},
        deps=[webhook_inbox],
        owners=INTEGRATIONS,
        pool="postgres",
        retry_policy=RETRY,
        description=description,
        tags={"webhook/route": route},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: WebhookBatch,
        postgres: PostgresResource,
        webhook_store: WebhookStore,
    ) -> dg.MaterializeResult:
        with postgres.get_connection() as conn:
            webhook_store.ensure_tables(conn)
            ids = batch_ids(conn, webhook_store, route, config.first_id, config.last_id)
            result = apply_batch(conn, webhook_store, route, ids, context.run.run_id)
        # One log line per step, failures included: each log line is a write to Dagster's event
        # log (a connection and an insert), and the full list is in the inbox already.
        summary = (
            f"{route}: {result.processed} processed, {result.failed} failed, "
            f"{result.unrouted} unrouted of {result.requested} requested"
        )
        if result.failures:
            shown = "; ".join(f"inbox id {i}: {reason}" for i, reason in result.failures[:5])
            context.log.warning(f"{summary}. First failures: {shown}")
        else:
            context.log.info(summary)
        return dg.MaterializeResult(metadata=result.metadata())

    return _asset


def _backlog_checks(route: str, asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "backlog_flowing",
                asset=asset.key,
                description="Fails when this route's oldest pending event has waited too long.",
            ),
            dg.AssetCheckSpec(
                "no_failed_events",
                asset=asset.key,
                description="Warns while events of this route are marked failed.",
            ),
        ],
        name=f"{asset_name(route)}_backlog_checks",
    )
    def _checks(postgres: PostgresResource, webhook_store: WebhookStore):
        with postgres.get_connection() as conn:
            figures = backlog(conn, webhook_store).get(route, RouteBacklog())
        yield from check_results(asset.key, figures)

    return _checks


_DESCRIPTIONS = {name: p.description for name, p in PROCESSORS.items()} | {
    UNKNOWN: "Events no route handles, archived for review and marked unrouted."
}
ROUTE_ASSETS: dict[str, dg.AssetsDefinition] = {
    route: _processor_asset(route, text) for route, text in _DESCRIPTIONS.items()
}
# One job for every route: a run applies one batch of each route it selects, a step per route.
# A run costs seconds of process start and code load whatever it carries, so one run per
# route per batch multiplied that cost by the number of busy routes (see routing.py).
BATCH_JOB = dg.define_asset_job(
    "webhook_batch_job",
    # The backlog checks run on their own (or from the sensor), not in every batch run;
    # steps run one after the other in the run's own process.
    selection=dg.AssetSelection.assets(*ROUTE_ASSETS.values()).without_checks(),
    executor_def=dg.in_process_executor,
    description="Apply one batch of webhook events from the inbox: one step per route the "
    "sensor selected, each applying that route's pending events in its id range.",
    # A whole run that fails (launch timed out, worker died) is run again by the daemon.
    tags={"dagster/max_retries": "3"},
)
ROUTE_CHECKS = [_backlog_checks(route, asset) for route, asset in ROUTE_ASSETS.items()]


@dg.definitions
def webhook_processors() -> dg.Definitions:
    """Every route's asset and backlog checks, and the batch job."""
    return dg.Definitions(
        assets=list(ROUTE_ASSETS.values()),
        jobs=[BATCH_JOB],
        asset_checks=ROUTE_CHECKS,
    )
