"""Wires the enrichment's store; its defaults are the tables the sample data seeds."""

import dagster as dg

from integration_patterns.defs.enrichment.store import EnrichmentStore


@dg.definitions
def enrichment_resources() -> dg.Definitions:
    """The ``enrichment_store`` resource beside the shared postgres and mongo ones."""
    return dg.Definitions(resources={"enrichment_store": EnrichmentStore()})
