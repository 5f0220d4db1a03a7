"""Demo section for the customer enrichment: seed, run yesterday's partition, show the top.

The lead's ``make demo`` calls ``run_demo(instance)``; the run is recorded in that instance,
so it shows in the UI with its metadata and check results afterwards.
"""

import datetime as dt

import dagster as dg
from psycopg import sql

from devstack import sample_data
from devstack.enrichment_defs import enrichment_definitions
from integration_patterns.defs.enrichment.upsert import TABLE
from integration_patterns.resources.s3 import S3ParquetIOManager

_TOP = """
SELECT customer_id, name, order_count, total_spent, event_count, engagement_score
FROM {table}
WHERE partition_date = %(partition_date)s
ORDER BY engagement_score DESC, total_spent DESC, customer_id
LIMIT 10
"""


def run_demo(instance: dg.DagsterInstance) -> str:
    """Seed the small data set, materialize yesterday's partition, describe the top 10."""
    end = sample_data.default_end()
    partition = (end - dt.timedelta(days=1)).date()
    postgres, mongo = sample_data.resources_from_env()
    try:
        report = sample_data.seed(postgres, mongo, volume=sample_data.PRESETS["small"], end=end)
        result = (
            enrichment_definitions(io_manager=S3ParquetIOManager.from_env())
            .resolve_job_def("customer_enrichment")
            .execute_in_process(instance=instance, partition_key=partition.isoformat())
        )
        table = sql.Identifier(sample_data.DEFAULT_SCHEMA, TABLE)
        with postgres.get_connection() as conn:
            top = sql.SQL(_TOP).format(table=table)
            rows = conn.execute(top, {"partition_date": partition}).fetchall()
    finally:
        postgres.close()
        mongo.close()
    lines = [
        f"customer_enrichment run {result.run_id} for {partition}: "
        f"{'success' if result.success else 'FAILED'}",
        f"  seeded {report.customers_rows} customer rows, {report.orders_rows} orders, "
        f"{report.events_docs} events in {report.seconds}s",
    ]
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("customer_analytics"):
            meta = event.step_materialization_data.materialization.metadata
            lines.append(
                "  analytics upsert: "
                + ", ".join(
                    f"{key} {meta[key].value}"
                    for key in ("rows_inserted", "rows_updated", "rows_unchanged")
                )
            )
    lines.append(f"  top customers ({sample_data.DEFAULT_SCHEMA}.{TABLE}):")
    lines.append(
        f"  {'id':>6}  {'name':<22} {'orders':>6} {'spent':>10} {'events':>6} {'score':>5}"
    )
    for cid, name, orders, spent, events, score in rows:
        lines.append(f"  {cid:>6}  {name:<22} {orders:>6} {spent:>10} {events:>6} {score:>5}")
    return "\n".join(lines)
