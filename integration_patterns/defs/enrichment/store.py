"""Where the enrichment reads and writes, and how wide its activity window is.

A resource rather than per-asset config because all four assets must agree on it: the
customers query, the events pipeline and the upsert read one object, and tests point a whole
run at a private schema and collection by swapping that one object.
"""

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    from psycopg import sql


@dataclass(frozen=True)
class ActivityWindow:
    """[start, end) of the activity a partition scores, and the partition's own date."""

    start: dt.datetime
    end: dt.datetime
    partition_date: dt.date


class EnrichmentStore(dg.ConfigurableResource):
    """Locations of the enrichment's sources and target.

    Example:
        ```python
        store = EnrichmentStore(schema_name="enrichment", lookback_days=30)
        store.table("customer_analytics")  # sql.Identifier("enrichment", "customer_analytics")
        ```
    """

    schema_name: str = Field(
        default="enrichment", description="PostgreSQL schema holding customers, orders, analytics."
    )
    events_collection: str = Field(
        default="user_events", description="MongoDB collection of user events."
    )
    lookback_days: int = Field(
        default=30,
        ge=1,
        description="Days of activity scored, ending with the partition's day (inclusive).",
    )

    def table(self, name: str) -> "sql.Identifier":
        """A schema-qualified table name, quoted by psycopg (never string-built)."""
        from psycopg import sql

        return sql.Identifier(self.schema_name, name)

    def window(self, partition: dg.TimeWindow) -> ActivityWindow:
        """The activity window of a daily partition: ``lookback_days`` ending at its end."""
        end = partition.end.astimezone(dt.UTC)
        return ActivityWindow(
            start=end - dt.timedelta(days=self.lookback_days),
            end=end,
            partition_date=partition.start.astimezone(dt.UTC).date(),
        )
