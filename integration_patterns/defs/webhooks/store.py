"""Where the webhook pattern reads and writes, and how many runs one sensor tick may request.

A resource rather than constants so the sensor and every processor agree on one schema, and
tests point the whole pattern at a private schema by swapping this one object. The receiver
reads the same schema from ``WEBHOOK_INBOX_SCHEMA`` (both default to ``public``).
"""

from __future__ import annotations

import dagster as dg
import psycopg
from psycopg import sql
from pydantic import Field

from integration_patterns.resources.postgres import ensure_ddl

# Entity tables the processors upsert into; ``last_inbox_id`` orders competing updates.
_ENTITY_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {orders} (
    order_id      text PRIMARY KEY,
    customer_id   text,
    amount        numeric(18, 2),
    currency      text,
    status        text,
    source        text        NOT NULL,
    delivery_id   text        NOT NULL,
    last_inbox_id bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {payments} (
    payment_id    text PRIMARY KEY,
    order_id      text,
    amount        numeric(18, 2),
    currency      text,
    status        text,
    source        text        NOT NULL,
    delivery_id   text        NOT NULL,
    last_inbox_id bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {users} (
    user_id       text PRIMARY KEY,
    email         text,
    name          text,
    attributes    jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    source        text        NOT NULL,
    delivery_id   text        NOT NULL,
    last_inbox_id bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {unknown} (
    source        text        NOT NULL,
    delivery_id   text        NOT NULL,
    event_type    text,
    payload       jsonb       NOT NULL,
    inbox_id      bigint      NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, delivery_id)
);
"""


class WebhookStore(dg.ConfigurableResource):
    """Locations of the inbox and of the tables the processors upsert into.

    Example:
        ```python
        store = WebhookStore(schema_name="public", max_runs_per_tick=100)
        store.table("webhook_orders")  # sql.Identifier("public", "webhook_orders")
        ```
    """

    schema_name: str = Field(
        default="public", description="PostgreSQL schema of webhook_inbox and the entity tables."
    )
    max_runs_per_tick: int = Field(
        default=100, ge=1, description="Most run requests one sensor evaluation emits."
    )

    def table(self, name: str) -> sql.Identifier:
        """A schema-qualified table name, quoted by psycopg (never string-built)."""
        return sql.Identifier(self.schema_name, name)

    @property
    def inbox(self) -> sql.Identifier:
        """The receiver's inbox table."""
        # The receiver owns the inbox schema; imported here, not at module level, so that
        # loading the code location never imports the services package.
        from integration_patterns.services.webhook_receiver.inbox import INBOX_TABLE

        return self.table(INBOX_TABLE)

    def ensure_entity_tables(self, conn: psycopg.Connection) -> None:
        """Create the processors' tables if missing (serialised across concurrent runs)."""
        with conn.transaction():
            ddl = sql.SQL(_ENTITY_DDL).format(
                schema=sql.Identifier(self.schema_name),
                orders=self.table("webhook_orders"),
                payments=self.table("webhook_payments"),
                users=self.table("webhook_users"),
                unknown=self.table("webhook_unknown_events"),
            )
            ensure_ddl(conn, "webhook_entities_ddl", [ddl])
