"""Event processors: one asset (and one job) per routed event type.

Each run handles exactly one inbox event, given in its run config by the routing sensor,
and upserts the entity it describes. Upserts are idempotent (re-running an event writes the
same row) and order-safe: a row is only overwritten by an event that arrived later
(``last_inbox_id``), so a redelivered old event cannot undo a newer one. Events of any other
type are archived, and an asset check flags them for a human.

No ``from __future__ import annotations`` here: Dagster reads the ``config`` annotations
at decoration time and cannot resolve them from strings.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import Field

from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.resources.postgres import PostgresResource


class WebhookEvent(dg.Config):
    """One inbox event, as the routing sensor puts it in the run config."""

    inbox_id: int = Field(description="webhook_inbox.id of the event.")
    source: str = Field(description="Configured source that sent it.")
    delivery_id: str = Field(description="Sender's delivery id (unique per source).")
    event_type: str = Field(default="", description="Event type ('' when the sender gave none).")
    received_at: str = Field(default="", description="When the receiver stored it (ISO 8601).")
    payload: dict[str, Any] = Field(description="The event body as received.")


class MalformedEventError(ValueError):
    """The event lacks a field its processor needs; it stays in the inbox for a fix and rerun."""


def entity_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The entity an event describes: Stripe's ``data.object``, else ``data``, else the body."""
    data = payload.get("data")
    if isinstance(data, dict):
        inner = data.get("object")
        return inner if isinstance(inner, dict) else data
    return payload


def _required(entity: dict[str, Any], event: WebhookEvent, *names: str) -> str:
    for name in names:
        value = entity.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    raise MalformedEventError(
        f"{event.event_type} event {event.source}:{event.delivery_id} has no {' or '.join(names)}"
    )


def _amount(entity: dict[str, Any], event: WebhookEvent) -> Decimal | None:
    value = entity.get("amount", entity.get("total"))
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MalformedEventError(
            f"event {event.source}:{event.delivery_id} has a non-numeric amount"
        ) from None
    if not amount.is_finite() or abs(amount) >= Decimal("1e16"):
        raise MalformedEventError(f"event {event.source}:{event.delivery_id} amount out of range")
    return amount


def _text(entity: dict[str, Any], name: str) -> str | None:
    value = entity.get(name)
    return None if value is None else str(value)


_UPSERT = """
INSERT INTO {table} ({columns}, source, delivery_id, last_inbox_id, updated_at)
VALUES ({values}, %(source)s, %(delivery_id)s, %(inbox_id)s, now())
ON CONFLICT ({key}) DO UPDATE SET {updates}, source = EXCLUDED.source,
    delivery_id = EXCLUDED.delivery_id, last_inbox_id = EXCLUDED.last_inbox_id,
    updated_at = now()
WHERE {table}.last_inbox_id <= EXCLUDED.last_inbox_id
RETURNING (xmax = 0) AS inserted
"""


def upsert_entity(
    postgres: PostgresResource,
    store: WebhookStore,
    table: str,
    key: str,
    row: dict[str, Any],
    event: WebhookEvent,
) -> str:
    """Upsert ``row`` keyed by ``key``; return 'inserted', 'updated' or 'skipped (older)'."""
    columns = list(row)
    query = sql.SQL(_UPSERT).format(
        table=store.table(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
        key=sql.Identifier(key),
        updates=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns if c != key
        ),
    )
    params = row | {
        "source": event.source,
        "delivery_id": event.delivery_id,
        "inbox_id": event.inbox_id,
    }
    with postgres.get_connection() as conn:
        store.ensure_entity_tables(conn)
        result = conn.execute(query, params).fetchone()
    if result is None:
        return "skipped (older)"
    return "inserted" if result[0] else "updated"


def _result(event: WebhookEvent, key: str, action: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "source": event.source,
            "delivery_id": event.delivery_id,
            "event_type": event.event_type,
            "entity_id": key,
            "action": action,
        }
    )


@dg.asset(group_name="webhooks", kinds={"postgres"}, pool="postgres")
def webhook_orders(
    context: dg.AssetExecutionContext,
    config: WebhookEvent,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.MaterializeResult:
    """Orders created through webhooks (``order.created``), one row per order."""
    entity = entity_of(config.payload)
    order_id = _required(entity, config, "order_id", "id")
    row = {
        "order_id": order_id,
        "customer_id": _text(entity, "customer_id"),
        "amount": _amount(entity, config),
        "currency": _text(entity, "currency"),
        "status": _text(entity, "status"),
    }
    action = upsert_entity(postgres, webhook_store, "webhook_orders", "order_id", row, config)
    context.log.info(f"order {order_id} {action} from {config.source}:{config.delivery_id}")
    return _result(config, order_id, action)


@dg.asset(group_name="webhooks", kinds={"postgres"}, pool="postgres")
def webhook_payments(
    context: dg.AssetExecutionContext,
    config: WebhookEvent,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.MaterializeResult:
    """Payments received through webhooks (``payment.received``), one row per payment."""
    entity = entity_of(config.payload)
    payment_id = _required(entity, config, "payment_id", "id")
    row = {
        "payment_id": payment_id,
        "order_id": _text(entity, "order_id"),
        "amount": _amount(entity, config),
        "currency": _text(entity, "currency"),
        "status": _text(entity, "status"),
    }
    action = upsert_entity(postgres, webhook_store, "webhook_payments", "payment_id", row, config)
    context.log.info(f"payment {payment_id} {action} from {config.source}:{config.delivery_id}")
    return _result(config, payment_id, action)


@dg.asset(group_name="webhooks", kinds={"postgres"}, pool="postgres")
def webhook_users(
    context: dg.AssetExecutionContext,
    config: WebhookEvent,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.MaterializeResult:
    """Users updated through webhooks (``user.updated``), latest state per user."""
    entity = entity_of(config.payload)
    user_id = _required(entity, config, "user_id", "id")
    row = {
        "user_id": user_id,
        "email": _text(entity, "email"),
        "name": _text(entity, "name"),
        "attributes": Jsonb(entity),
    }
    action = upsert_entity(postgres, webhook_store, "webhook_users", "user_id", row, config)
    context.log.info(f"user {user_id} {action} from {config.source}:{config.delivery_id}")
    return _result(config, user_id, action)


@dg.asset(
    group_name="webhooks",
    kinds={"postgres"},
    pool="postgres",
    check_specs=[
        dg.AssetCheckSpec(
            "no_unknown_event",
            asset="webhook_unknown_events",
            description="Warns when an event type no processor handles was received.",
        )
    ],
)
def webhook_unknown_events(
    context: dg.AssetExecutionContext,
    config: WebhookEvent,
    postgres: PostgresResource,
    webhook_store: WebhookStore,
) -> dg.MaterializeResult:
    """Events of types no processor handles, archived for review instead of dropped."""
    query = sql.SQL(
        "INSERT INTO {table} (source, delivery_id, event_type, payload, inbox_id) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (source, delivery_id) DO NOTHING"
    ).format(table=webhook_store.table("webhook_unknown_events"))
    with postgres.get_connection() as conn:
        webhook_store.ensure_entity_tables(conn)
        cur = conn.execute(
            query,
            (
                config.source,
                config.delivery_id,
                config.event_type or None,
                Jsonb(config.payload),
                config.inbox_id,
            ),
        )
        archived = cur.rowcount == 1
    event_type = config.event_type or "(none)"
    context.log.warning(
        f"unknown event type {event_type!r} from {config.source}:{config.delivery_id} archived"
    )
    facts = {"source": config.source, "delivery_id": config.delivery_id, "event_type": event_type}
    return dg.MaterializeResult(
        metadata=facts | {"action": "archived" if archived else "already archived"},
        check_results=[
            dg.AssetCheckResult(
                check_name="no_unknown_event",
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"No processor handles event type {event_type!r}.",
                metadata=facts,
            )
        ],
    )


# Each job is one short step: in-process, so a run loads the code location once, not twice.
webhook_orders_job = dg.define_asset_job(
    "webhook_orders_job",
    selection=[webhook_orders],
    description="Process one order.created event.",
    executor_def=dg.in_process_executor,
)
webhook_payments_job = dg.define_asset_job(
    "webhook_payments_job",
    selection=[webhook_payments],
    description="Process one payment.received event.",
    executor_def=dg.in_process_executor,
)
webhook_users_job = dg.define_asset_job(
    "webhook_users_job",
    selection=[webhook_users],
    description="Process one user.updated event.",
    executor_def=dg.in_process_executor,
)
webhook_unknown_job = dg.define_asset_job(
    "webhook_unknown_job",
    selection=[webhook_unknown_events],
    description="Archive one event of a type no processor handles.",
    executor_def=dg.in_process_executor,
)
