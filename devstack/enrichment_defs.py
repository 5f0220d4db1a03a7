"""The enrichment on its own: its assets (checks included) and job, resources from the env.

Tests, the demo and the benchmarks run the customer enrichment without the rest of the code
location (pointed at their own store, or on Celery); this is the one place that lists what
that takes, so a new enrichment asset or check reaches all of them.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment.schedule import customer_enrichment
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource


def enrichment_definitions(
    store: EnrichmentStore | None = None,
    *,
    jobs: Sequence[Any] = (customer_enrichment,),  # define_asset_job results
    schedules: Sequence[dg.ScheduleDefinition] = (),
    env: Mapping[str, str] | None = None,
    **resources: Any,
) -> dg.Definitions:
    """The enrichment's definitions; ``postgres`` and ``mongo`` from ``env`` unless given."""
    return dg.Definitions(
        assets=[
            assets.customers,
            assets.user_events,
            assets.enriched_customers,
            assets.customer_analytics,
        ],
        jobs=list(jobs),
        schedules=list(schedules),
        resources={
            "postgres": PostgresResource.from_env(env),
            "mongo": MongoResource.from_env(env),
            "enrichment_store": store or EnrichmentStore(),
            **resources,
        },
    )
