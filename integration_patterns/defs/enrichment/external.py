"""The enrichment's sources, declared as assets so the lineage starts where the data lives.

Dagster does not write them: the shop's database holds ``customers`` and ``orders`` (in the
``EnrichmentStore`` schema) and the product's event collector fills the MongoDB collection.
The ``customers`` and ``user_events`` assets read them, so each names them in ``deps``.
"""

import dagster as dg

from integration_patterns.defs.owners import INTEGRATIONS

GROUP = "enrichment"

postgres_customers = dg.AssetSpec(
    "postgres_customers",
    description="PostgreSQL table of shop customers (one row per import; ids may repeat).",
    kinds={"postgres", "table"},
    group_name=GROUP,
    owners=INTEGRATIONS,
)

postgres_orders = dg.AssetSpec(
    "postgres_orders",
    description="PostgreSQL table of shop orders: customer id, amount, ordered_at.",
    kinds={"postgres", "table"},
    group_name=GROUP,
    owners=INTEGRATIONS,
)

mongo_user_events = dg.AssetSpec(
    "mongo_user_events",
    description="MongoDB collection of product events per raw user id, with timestamps.",
    kinds={"mongodb"},
    group_name=GROUP,
    owners=INTEGRATIONS,
)
