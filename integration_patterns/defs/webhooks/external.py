"""The webhook senders and the inbox they fill, declared as assets for the lineage.

Each provider posts to the receiver (``POST /webhooks/{source}``), which verifies the
signature and writes the event to the ``webhook_inbox`` table; the inbox sensor routes
pending rows by event type to the route assets (``assets.py``), which read the inbox. The
routing table (``routes.py``) names event types of these providers: the order, payment
and user events of our own shop (plain HMAC), Stripe's and GitHub's, and anything a
Standard Webhooks (Svix) sender posts. The names are the sources ``.env.example``
configures; a source configured under another name still lands in the same inbox.
"""

import dagster as dg

from integration_patterns.defs.owners import INTEGRATIONS
from integration_patterns.inbox import INBOX_TABLE

GROUP = "webhooks"

# source name -> (kind, what it sends and how it signs)
SOURCES: dict[str, tuple[str, str]] = {
    "shop": ("webhook", "Our shop's order, payment and user events (X-Webhook-Signature)."),
    "stripe": ("stripe", "Stripe payment, invoice and customer events (Stripe-Signature)."),
    "github": ("github", "GitHub push, pull-request and issue events (X-Hub-Signature-256)."),
    "svix": ("svix", "Events from a Standard Webhooks sender (webhook-signature, svix-*)."),
}


def source_key(source: str) -> str:
    """The asset key of a webhook source (``<name>_webhooks``)."""
    return f"{source}_webhooks"


webhook_sources = [
    dg.AssetSpec(
        source_key(source),
        description=f"Webhook source {source!r}: {text}",
        kinds={kind},
        group_name=GROUP,
        owners=INTEGRATIONS,
    )
    for source, (kind, text) in SOURCES.items()
]

webhook_inbox = dg.AssetSpec(
    INBOX_TABLE,
    description=(
        "PostgreSQL table the webhook receiver writes every verified delivery to (one row "
        "per source and delivery id) before it answers 202; processors record outcomes in it."
    ),
    deps=webhook_sources,
    kinds={"postgres", "table"},
    group_name=GROUP,
    owners=INTEGRATIONS,
)
