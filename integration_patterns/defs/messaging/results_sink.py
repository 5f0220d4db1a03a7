"""The project's own consumer of the results queue: results land in PostgreSQL, once each.

Without a consumer every demo left thousands of results in ``orders.results`` for good. A
length limit is not the answer here: the queue dead-letters into the orders DLX, so
overflowing results would pour into the dead-letter queue. Instead this asset drains the
queue in chunks into ``order_results`` keyed by ``message_id`` (a duplicate from an
at-least-once re-execution or a re-drive inserts nothing) and acknowledges a chunk only
after its transaction committed. A schedule runs it every ten minutes.
"""

import json

import dagster as dg
from pydantic import Field

from integration_patterns.defs.messaging.external import GROUP, orders_results_queue
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.defs.owners import INTEGRATIONS
from integration_patterns.resources.postgres import PostgresResource, ensure_ddl
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.transient import TRANSIENT_RETRY_POLICY, retry_transient

RESULTS_TABLE = "order_results"

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    message_id text PRIMARY KEY,
    result     jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now()
)
"""

_INSERT = """
INSERT INTO {table} (message_id, result)
SELECT r.message_id, r.result FROM jsonb_to_recordset(%s::jsonb) AS r(message_id text, result jsonb)
ON CONFLICT (message_id) DO NOTHING
"""


class DrainConfig(dg.Config):
    """How much to drain in one run."""

    max_messages: int = Field(default=200_000, ge=1, description="Most results per run.")
    chunk: int = Field(default=1000, ge=1, description="Results per transaction and ack.")
    table: str = Field(default=RESULTS_TABLE, description="PostgreSQL table of results.")


@dg.asset(
    group_name=GROUP,
    kinds={"rabbitmq", "postgres"},
    pool="postgres",
    deps=[orders_results_queue],
    owners=INTEGRATIONS,
    retry_policy=TRANSIENT_RETRY_POLICY,
)
@retry_transient
def order_results(
    context: dg.AssetExecutionContext,
    config: DrainConfig,
    rabbitmq: RabbitMQResource,
    postgres: PostgresResource,
    orders_stream: OrdersStreamResource,
) -> dg.MaterializeResult:
    """Processed orders from the results queue, one row per message id."""
    from psycopg import sql

    table = sql.Identifier(config.table)
    drained = inserted = 0
    with postgres.get_connection() as conn:
        ensure_ddl(conn, f"results:{config.table}", [sql.SQL(_DDL).format(table=table)])
    with rabbitmq.channel() as channel:
        orders_stream.declare_topology(rabbitmq, channel)
        channel.basic_qos(prefetch_count=config.chunk)
        rows, last_tag = [], None
        for method, props, body in channel.consume(
            orders_stream.results_queue, inactivity_timeout=1.0
        ):
            if method is not None:
                raw = body or b""
                try:
                    result = json.loads(raw)
                except ValueError:
                    result = {"unparsable": raw.decode(errors="replace")[:1000]}
                message_id = props.message_id if props is not None else None
                rows.append({"message_id": message_id or "", "result": result})
                last_tag = method.delivery_tag
            full = len(rows) >= config.chunk or drained + len(rows) >= config.max_messages
            if rows and last_tag is not None and (method is None or full):
                with postgres.get_connection() as conn:
                    cursor = conn.execute(sql.SQL(_INSERT).format(table=table), (json.dumps(rows),))
                    inserted += cursor.rowcount
                channel.basic_ack(last_tag, multiple=True)  # only after the commit
                drained += len(rows)
                rows = []
            if method is None or drained >= config.max_messages:
                break
        channel.cancel()  # unacknowledged prefetched messages go back to the queue
    context.log.info(f"drained {drained} results, {inserted} new, {drained - inserted} duplicates")
    return dg.MaterializeResult(
        metadata={"drained": drained, "inserted": inserted, "duplicates": drained - inserted}
    )


order_results_job = dg.define_asset_job(
    "order_results_drain",
    selection=[order_results],
    description="Drain the orders results queue into PostgreSQL.",
)

order_results_every_10_minutes = dg.ScheduleDefinition(
    name="order_results_every_10_minutes",
    job=order_results_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Keeps orders.results short: its results move to PostgreSQL.",
)
