"""The results queue has a consumer: results move to PostgreSQL once each, and the queue empties.

Duplicates (the same message id published twice, as an at-least-once re-execution does)
become one row; a result is acknowledged only after its row committed, so a failed run
leaves it in the queue.
"""

import json

import dagster as dg
from psycopg import sql

from integration_patterns.defs.messaging.results_sink import order_results
from integration_patterns_tests import test_messaging

stream = test_messaging.stream  # the orders stream fixture with its own topic and queues


def drain_run(stream, rabbitmq, postgres, table, **config):
    return dg.materialize(
        [order_results],
        resources={"rabbitmq": rabbitmq, "postgres": postgres, "orders_stream": stream},
        run_config={"ops": {"order_results": {"config": {"table": table, **config}}}},
        raise_on_error=False,
    )


def test_results_are_drained_into_postgres_once(stream, rabbitmq, postgres, unique):
    table = f"order_results_{unique}"
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
        for i in [*range(2500), *range(100)]:  # 100 duplicates
            rabbitmq.publish(
                channel,
                exchange=stream.results_exchange,
                routing_key=stream.results_routing_key,
                body=json.dumps({"order_id": f"o-{i}", "total": "1.00"}).encode(),
                message_id=f"{stream.topic}-0-{i}",
            )
    try:
        first = drain_run(stream, rabbitmq, postgres, table, chunk=1000)
        assert first.success
        metadata = first.asset_materializations_for_node("order_results")[0].metadata
        assert metadata["drained"].value == 2600 and metadata["inserted"].value == 2500
        with rabbitmq.channel() as channel:
            left = channel.queue_declare(stream.results_queue, passive=True).method.message_count
        assert left == 0
        with postgres.get_connection() as conn:
            count = conn.execute(
                sql.SQL("SELECT count(DISTINCT message_id), count(*) FROM {}").format(
                    sql.Identifier(table)
                )
            ).fetchone()
        assert count == (2500, 2500)
        again = drain_run(stream, rabbitmq, postgres, table)
        assert (
            again.asset_materializations_for_node("order_results")[0].metadata["drained"].value == 0
        )
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
