"""The two source reads: customer spend in SQL and per-user activity as a MongoDB pipeline.

Values always travel as bound parameters (window bounds, limit); only schema-qualified table
names are composed, and those through ``psycopg.sql.Identifier``. Both reads aggregate where
the data lives, so a million orders or events cross the wire as one row per customer.
"""

from typing import TYPE_CHECKING, Any, LiteralString

from integration_patterns.defs.enrichment.store import ActivityWindow, EnrichmentStore
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    from psycopg import sql


if TYPE_CHECKING:  # pandas is imported by the steps that use it, not by loading the location
    import pandas as pd

CUSTOMER_COLUMNS = ["customer_id", "name", "email", "order_count", "total_spent"]
EVENT_COLUMNS = ["raw_user_id", "event_count", "last_event_at"]

# One row per customer id: a re-imported id keeps its latest row, rows without an id are not
# customers. Spend counts only orders inside the window; a LIMIT of NULL means no limit.
_CUSTOMERS: LiteralString = """
WITH latest AS (
    SELECT DISTINCT ON (customer_id) customer_id, name, email
    FROM {customers}
    WHERE customer_id IS NOT NULL
    ORDER BY customer_id, row_id DESC
), spend AS (
    SELECT customer_id, count(*) AS order_count, sum(amount) AS total_spent
    FROM {orders}
    WHERE ordered_at >= %(start)s AND ordered_at < %(end)s AND customer_id IS NOT NULL
    GROUP BY customer_id
)
SELECT l.customer_id, l.name, l.email,
       coalesce(s.order_count, 0) AS order_count,
       coalesce(s.total_spent, 0)::numeric(14, 2) AS total_spent
FROM latest l LEFT JOIN spend s USING (customer_id)
ORDER BY total_spent DESC, l.customer_id
LIMIT %(limit)s
"""

# The mess the read tolerated, counted so it shows in metadata instead of vanishing.
_SOURCE_QUALITY: LiteralString = """
SELECT
    (SELECT count(*) FROM {customers} WHERE customer_id IS NULL) AS null_customer_ids,
    (SELECT count(customer_id) - count(DISTINCT customer_id) FROM {customers})
        AS duplicate_customer_rows,
    (SELECT count(*) FROM {orders} o
       WHERE o.ordered_at >= %(start)s AND o.ordered_at < %(end)s
         AND o.customer_id IS NULL) AS orders_without_customer,
    (SELECT count(*) FROM {orders} o
       WHERE o.ordered_at >= %(start)s AND o.ordered_at < %(end)s
         AND o.customer_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM {customers} c WHERE c.customer_id = o.customer_id))
        AS orders_unknown_customer
"""


def _format(query: LiteralString, store: EnrichmentStore) -> "sql.Composed":
    from psycopg import sql

    return sql.SQL(query).format(customers=store.table("customers"), orders=store.table("orders"))


def fetch_customers(
    postgres: PostgresResource,
    store: EnrichmentStore,
    window: ActivityWindow,
    *,
    limit: int | None = None,
) -> "tuple[pd.DataFrame, dict[str, int]]":
    """Customers with their order count and spend in the window, and the source mess counts."""
    import pandas as pd

    params: dict[str, Any] = {"start": window.start, "end": window.end, "limit": limit}
    with postgres.get_connection() as conn:
        rows = conn.execute(_format(_CUSTOMERS, store), params).fetchall()
        quality = conn.execute(_format(_SOURCE_QUALITY, store), params).fetchone()
    frame = pd.DataFrame(rows, columns=CUSTOMER_COLUMNS)
    frame = frame.astype({"customer_id": "int64", "order_count": "int64"})
    names = ["null_customer_ids", "duplicate_customer_rows"]
    names += ["orders_without_customer", "orders_unknown_customer"]
    return frame, dict(zip(names, (int(v) for v in quality or (0, 0, 0, 0)), strict=True))


def events_pipeline(window: ActivityWindow, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Events per user in the window, most active first (``_id`` breaks ties stably)."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"timestamp": {"$gte": window.start, "$lt": window.end}}},
        {
            "$group": {
                "_id": "$user_id",
                "event_count": {"$sum": 1},
                "last_event_at": {"$max": "$timestamp"},
            }
        },
        {"$sort": {"event_count": -1, "_id": 1}},
    ]
    if limit is not None:
        pipeline.append({"$limit": limit})
    return pipeline


def fetch_user_events(
    mongo: MongoResource,
    store: EnrichmentStore,
    window: ActivityWindow,
    *,
    limit: int | None = None,
) -> "pd.DataFrame":
    """Per raw user id (as MongoDB stores it) the event count and the last event time."""
    import pandas as pd

    docs = mongo.aggregate(store.events_collection, events_pipeline(window, limit=limit))
    frame = pd.DataFrame(
        [(d["_id"], d["event_count"], d.get("last_event_at")) for d in docs],
        columns=EVENT_COLUMNS,
    )
    frame["event_count"] = frame["event_count"].astype("int64")
    # pymongo hands back naive UTC datetimes; make the zone explicit before anything compares.
    frame["last_event_at"] = pd.to_datetime(frame["last_event_at"], utc=True)
    return frame
