"""The enrichment job and its daily schedule.

The schedule fires at 02:00 UTC and requests the partition of the day that just ended (the
latest complete daily partition), so late events from around midnight are in. A backfill is
the same job launched over a range of partitions from the UI or ``dagster job backfill``;
the upsert keeps the newest partition's row per customer whatever order they run in.
"""

import dagster as dg

from integration_patterns.defs.enrichment.assets import (
    customer_analytics,
    customers,
    enriched_customers,
    user_events,
)

customer_enrichment = dg.define_asset_job(
    "customer_enrichment",
    selection=[customers, user_events, enriched_customers, customer_analytics],
    description="Score customers from PostgreSQL orders and MongoDB events; upsert analytics.",
    # The two source reads could overlap, but each aggregates in its database and returns
    # in well under the seconds a step process costs to start; the join and write follow.
    executor_def=dg.in_process_executor,
)

customer_enrichment_daily = dg.build_schedule_from_partitioned_job(
    customer_enrichment,
    name="customer_enrichment_daily",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 02:00 UTC, the previous day's partition.",
)
