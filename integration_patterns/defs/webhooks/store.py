"""Where the webhook pattern reads and writes, how it batches, and how it routes.

A resource rather than constants so the sensor, every processor and the replay job agree on
one schema, batch size and routing table, and tests point the whole pattern at a private
schema by swapping this one object. The receiver reads the same schema setting
(``WEBHOOK_INBOX_SCHEMA``, see ``integration_patterns.inbox``).
"""

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, field_validator

from integration_patterns.defs.webhooks.processors import PROCESSORS, Processor
from integration_patterns.defs.webhooks.routes import ANY, DEFAULT_ROUTES, UNKNOWN, route_for
from integration_patterns.inbox import DEFAULT_SCHEMA, INBOX_TABLE, ensure_inbox
from integration_patterns.resources.postgres import ensure_ddl

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg
    from psycopg import sql


UNKNOWN_TABLE = "webhook_unknown_events"

_UNKNOWN_DDL = """
CREATE TABLE IF NOT EXISTS {unknown} (
    source        text        NOT NULL,
    delivery_id   text        NOT NULL,
    event_type    text,
    payload       jsonb       NOT NULL,
    inbox_id      bigint      NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, delivery_id)
)
"""


def entity_ddl(schema: str, processor: Processor) -> "list[sql.Composable]":
    """Create the processor's table, and add columns a newer version introduced."""
    from psycopg import sql

    table = sql.Identifier(schema, processor.table)
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))  # pyright: ignore[reportArgumentType]
        for name, kind in processor.columns.items()
    ]
    create = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {table} ({columns}, source text NOT NULL, "
        "delivery_id text NOT NULL, last_inbox_id bigint NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY ({key}))"
    ).format(
        table=table,
        columns=sql.SQL(", ").join(columns),
        key=sql.SQL(", ").join(map(sql.Identifier, processor.key)),
    )
    added = [
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(table, column)
        for column in columns
    ]
    return [create, *added]


class WebhookStore(dg.ConfigurableResource):
    """The inbox and entity tables' schema, the batch limits and the routing table.

    Example:
        ```python
        store = WebhookStore(schema_name="public", max_events_per_run=20_000)
        store.route("github", "pull_request", "closed")  # "github_pull_requests"
        ```
    """

    schema_name: str = Field(
        default=DEFAULT_SCHEMA,
        description="PostgreSQL schema of webhook_inbox and the entity tables.",
    )
    max_events_per_run: int = Field(
        default=20_000,
        description="Most events one processor run applies; a route with this many pending "
        "events gets a run at once. Large, because a run costs seconds to start whatever "
        "its size: while a route's run is starting its next batch grows instead.",
    )
    max_batch_bytes: int = Field(
        default=64 * 1024 * 1024,
        description="Most payload bytes (as stored, pg_column_size) one run applies; a batch "
        "is cut at whichever of this and max_events_per_run comes first (an event larger "
        "than this goes alone). Runs read their events in chunks, so this bounds a run's "
        "transaction and duration, not its memory.",
    )
    max_wait_seconds: int = Field(
        default=3,
        description="A route with fewer pending events gets a run once its oldest pending "
        "event has waited this long.",
    )
    max_routes_per_run: int = Field(
        default=0,
        description="Most routes whose batches share one run (a step each); 0 = every route "
        "with a batch due. A run costs seconds of process start and code load whatever it "
        "carries, so sharing divides that cost by the number of busy routes; 1 gives each "
        "route's batch a run of its own (routes isolated in their own runs and retries).",
    )
    routes: dict[str, dict[str, str]] = Field(
        default=DEFAULT_ROUTES,
        description="Routing table per source ('*' = every source): event type (or "
        "'<type>.<action>') -> processor, '*' = the source's default. Processors: "
        + ", ".join([*PROCESSORS, UNKNOWN])
        + ".",
    )

    @field_validator("routes")
    @classmethod
    def _known_processors(cls, routes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for source, table in routes.items():
            for event_type, processor in table.items():
                if processor not in PROCESSORS and processor != UNKNOWN:
                    raise ValueError(
                        f"routes[{source!r}][{event_type!r}]: unknown processor {processor!r}"
                    )
        return routes

    def route(self, source: str, event_type: str | None, action: str | None = None) -> str:
        """The processor for one event (``unknown`` when no route matches)."""
        return route_for(self.routes, source, event_type, action)

    def action_types(self) -> list[str]:
        """Event types whose route depends on the body's ``action`` (only those read the body)."""
        return sorted(
            {
                key.rsplit(".", 1)[0]
                for table in self.routes.values()
                for key in table
                if key != ANY and "." in key
            }
        )

    def table(self, name: str) -> "sql.Identifier":
        """A schema-qualified table name, quoted by psycopg (never string-built)."""
        from psycopg import sql

        return sql.Identifier(self.schema_name, name)

    @property
    def inbox(self) -> "sql.Identifier":
        """The inbox table (its contract lives in ``integration_patterns.inbox``)."""
        return self.table(INBOX_TABLE)

    def _expected_columns(self) -> set[tuple[str, str]]:
        expected = {(INBOX_TABLE, "status"), (INBOX_TABLE, "route"), (UNKNOWN_TABLE, "inbox_id")}
        for processor in PROCESSORS.values():
            expected |= {(processor.table, column) for column in processor.columns}
        return expected

    def ensure_tables(self, conn: "psycopg.Connection") -> None:
        """Create or migrate the inbox and every processor's table (serialised across runs).

        Checked with one catalog query first: ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``
        takes an exclusive lock even when it changes nothing, and every batch run calls this.
        """
        from psycopg import sql

        expected = self._expected_columns()
        present = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = ANY(%s)",
            (self.schema_name, sorted({t for t, _ in expected})),
        ).fetchall()
        conn.commit()
        if expected <= {tuple(row) for row in present}:
            return
        ensure_inbox(conn, self.schema_name)
        with conn.transaction():
            statements: list[sql.Composable] = [
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema_name)),
                sql.SQL(_UNKNOWN_DDL).format(unknown=self.table(UNKNOWN_TABLE)),
            ]
            for processor in PROCESSORS.values():
                statements += entity_ddl(self.schema_name, processor)
            ensure_ddl(conn, "webhook_entities_ddl", statements)
