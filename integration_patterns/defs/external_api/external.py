"""The partner's REST API, declared as an asset so the lineage starts outside Dagster.

The partner serves its records at ``/v2/data`` (OAuth2 client credentials, paged, rate
limited); ``partner_records_raw`` reads them, so it names this asset in ``deps``.
"""

import dagster as dg

from integration_patterns.defs.owners import INTEGRATIONS

GROUP = "external_api"

partner_api = dg.AssetSpec(
    "partner_api",
    description="The partner's records endpoint, GET /v2/data (OAuth2, paged, rate limited).",
    kinds={"api"},
    group_name=GROUP,
    owners=INTEGRATIONS,
)
