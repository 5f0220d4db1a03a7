"""The orders stream's topic, exchanges and queues, declared as assets for the lineage.

The Kafka topic is written by the shop's producers. The exchanges are written by the
``kafka_orders_batch`` job, which reports a materialization of each (with the offset
range it published) after RabbitMQ confirmed every message. The queues are bound to the
exchanges by ``OrdersStreamResource.declare_topology``: results are drained into
PostgreSQL by ``order_results``, dead letters wait for the re-drive job, which parks
letters that fail again. Names are the defaults; tests run their own topology under other
names and report to the same assets.

Two real edges are left out because the asset graph must be acyclic: the results queue
dead-letters rejected results into the dead-letter exchange, and the re-drive job sends
dead letters back to the results exchange.
"""

import dagster as dg

from integration_patterns.defs.owners import INTEGRATIONS

GROUP = "messaging"


def _spec(key: str, kind: str, description: str, deps: list[dg.AssetSpec]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=description,
        deps=deps,
        kinds={kind},
        group_name=GROUP,
        owners=INTEGRATIONS,
    )


kafka_orders_topic = _spec(
    "kafka_orders_topic", "kafka", "Kafka topic of order events (ORDERS_TOPIC), any partitions.", []
)
orders_results_exchange = _spec(
    "orders_results_exchange",
    "rabbitmq",
    "RabbitMQ topic exchange `results`: one message per valid order, id <topic>-<partition>-"
    "<offset>.",
    [kafka_orders_topic],
)
orders_dead_letter_exchange = _spec(
    "orders_dead_letter_exchange",
    "rabbitmq",
    "RabbitMQ exchange `orders.dlx`: every order that failed, its original bytes and the "
    "reason in headers.",
    [kafka_orders_topic],
)
orders_results_queue = _spec(
    "orders_results_queue",
    "rabbitmq",
    "RabbitMQ queue `orders.results`, bound to the results exchange.",
    [orders_results_exchange],
)
orders_dead_letter_queue = _spec(
    "orders_dead_letter_queue",
    "rabbitmq",
    "RabbitMQ queue `orders.dead-letter`, bound to the dead-letter exchange; re-driven by "
    "orders_dead_letter_redrive.",
    [orders_dead_letter_exchange],
)
orders_parking_queue = _spec(
    "orders_parking_queue",
    "rabbitmq",
    "RabbitMQ queue `orders.parking`: re-driven dead letters that failed again, for a human.",
    [orders_dead_letter_queue],
)
