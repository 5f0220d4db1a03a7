"""The enrichment job and its daily schedule.

The schedule fires at 02:00 UTC and requests the partition of the day that just ended (the
latest complete daily partition), so late events from around midnight are in. A backfill is
the same job launched over a range of partitions from the UI or ``dagster job backfill``;
the upsert keeps the newest partition's row per customer whatever order they run in.

On a fresh ``make dev`` the source tables do not exist until ``make seed`` (or real data)
creates them: the tick then skips, saying which tables are missing and how to create them,
instead of launching a run that can only fail.
"""

import datetime as dt

import dagster as dg

from integration_patterns.defs.enrichment.assets import (
    customer_analytics,
    customers,
    enriched_customers,
    user_events,
)
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.resources.postgres import PostgresResource

SOURCE_TABLES = ("customers", "orders")

customer_enrichment = dg.define_asset_job(
    "customer_enrichment",
    selection=[customers, user_events, enriched_customers, customer_analytics],
    description="Score customers from PostgreSQL orders and MongoDB events; upsert analytics.",
    # The two source reads could overlap, but each aggregates in its database and returns
    # in well under the seconds a step process costs to start; the join and write follow.
    executor_def=dg.in_process_executor,
)


def missing_source_tables(postgres: PostgresResource, store: EnrichmentStore) -> list[str]:
    """The enrichment's PostgreSQL source tables that do not exist.

    MongoDB events may be absent: a customer without events scores on orders alone.
    """
    with postgres.get_connection() as conn:
        found = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = ANY(%s)",
                (store.schema_name, list(SOURCE_TABLES)),
            ).fetchall()
        }
    return [f"{store.schema_name}.{t}" for t in SOURCE_TABLES if t not in found]


@dg.schedule(
    name="customer_enrichment_daily",
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    job=customer_enrichment,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 02:00 UTC, the previous day's partition.",
)
def customer_enrichment_daily(
    context: dg.ScheduleEvaluationContext,
    postgres: PostgresResource,
    enrichment_store: EnrichmentStore,
) -> dg.RunRequest | dg.SkipReason:
    """Request yesterday's partition once its sources exist."""
    scheduled = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    partition_key = (scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    missing = missing_source_tables(postgres, enrichment_store)
    if missing:
        return dg.SkipReason(
            f"partition {partition_key} not requested: source table(s) {', '.join(missing)} "
            "do not exist yet; create them with `make seed` (sample data) or load real data"
        )
    return dg.RunRequest(run_key=partition_key, partition_key=partition_key)
