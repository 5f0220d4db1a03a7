"""Wires the webhook pattern's store beside the shared ``postgres`` resource.

The schema is the receiver's setting (``WEBHOOK_INBOX_SCHEMA``), so both sides always read
and write the same inbox; the batch limits and routing table are settings too.
"""

import dagster as dg

from integration_patterns.defs.webhooks.routes import routes_from_env
from integration_patterns.defs.webhooks.store import WebhookStore


@dg.definitions
def webhook_resources() -> dg.Definitions:
    """The ``webhook_store`` resource, configured from the environment."""
    return dg.Definitions(
        resources={
            "webhook_store": WebhookStore(
                schema_name=dg.EnvVar("WEBHOOK_INBOX_SCHEMA"),
                max_events_per_run=dg.EnvVar.int("WEBHOOK_MAX_EVENTS_PER_RUN"),
                max_batch_bytes=dg.EnvVar.int("WEBHOOK_MAX_BATCH_BYTES"),
                max_wait_seconds=dg.EnvVar.int("WEBHOOK_MAX_WAIT_SECONDS"),
                max_routes_per_run=dg.EnvVar.int("WEBHOOK_MAX_ROUTES_PER_RUN"),
                routes=routes_from_env(),
            )
        }
    )
