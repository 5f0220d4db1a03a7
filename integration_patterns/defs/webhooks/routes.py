"""The routing table: which processor handles an event, per source, by event type.

A table maps an event type to a processor name. Lookup order for an event of source ``s``:
the table of ``s`` (if configured) and then the ``*`` table shared by every source; in each,
first ``<type>.<action>`` (GitHub sends the action in the body, e.g. ``pull_request.closed``),
then ``<type>``, then the table's ``*`` default. An event no table matches goes to the
``unknown`` processor, which archives it and marks it ``unrouted``.

The route is only a first guess taken from unsigned metadata (GitHub's ``X-GitHub-Event``
header is not signed): every processor checks the payload has the shape it needs, and an
event that does not is marked ``failed`` with the reason, never applied.
"""

import json
import os
from collections.abc import Mapping

ANY = "*"
UNKNOWN = "unknown"

DEFAULT_ROUTES: dict[str, dict[str, str]] = {
    ANY: {
        # The types the pattern was first specified with.
        "order.created": "orders",
        "payment.received": "payments",
        "user.updated": "users",
        # Stripe.
        "payment_intent.succeeded": "payments",
        "charge.refunded": "payments",
        "invoice.paid": "payments",
        "customer.created": "users",
        "customer.updated": "users",
        # GitHub (X-GitHub-Event, and the body's action where it matters).
        "push": "github_pushes",
        "pull_request.opened": "github_pull_requests",
        "pull_request.reopened": "github_pull_requests",
        "pull_request.edited": "github_pull_requests",
        "pull_request.synchronize": "github_pull_requests",
        "pull_request.closed": "github_pull_requests",
        "issues": "github_issues",
    },
}


def routes_from_env(env: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The default tables with ``WEBHOOK_ROUTES`` (JSON, same shape) laid over them per source.

    Example: ``WEBHOOK_ROUTES='{"shop": {"order.placed": "orders", "*": "unknown"}}'``.
    """
    env = os.environ if env is None else env
    text = env.get("WEBHOOK_ROUTES", "").strip()
    routes = {source: dict(table) for source, table in DEFAULT_ROUTES.items()}
    if not text:
        return routes
    try:
        extra = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"WEBHOOK_ROUTES is not JSON: {exc}") from None
    if not isinstance(extra, dict) or not all(
        isinstance(t, dict) and all(isinstance(v, str) for v in t.values()) for t in extra.values()
    ):
        raise ValueError("WEBHOOK_ROUTES must map source -> {event type: processor}")
    for source, table in extra.items():
        routes.setdefault(source, {}).update(table)
    return routes


def route_for(
    routes: Mapping[str, Mapping[str, str]],
    source: str,
    event_type: str | None,
    action: str | None = None,
) -> str:
    """The processor for one event (``unknown`` when nothing matches)."""
    tables = [routes[name] for name in (source, ANY) if name in routes]
    keys = [f"{event_type}.{action}"] if event_type and action else []
    keys += [event_type] if event_type else []
    for table in tables:
        for key in keys:
            if key in table:
                return table[key]
        if ANY in table:
            return table[ANY]
    return UNKNOWN
