"""Wires the webhook pattern's store beside the shared ``postgres`` resource."""

import dagster as dg

from integration_patterns.defs.webhooks.store import WebhookStore


@dg.definitions
def webhook_resources() -> dg.Definitions:
    """The ``webhook_store`` resource (schema ``public``, 100 run requests per tick)."""
    return dg.Definitions(resources={"webhook_store": WebhookStore()})
