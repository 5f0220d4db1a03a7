"""The orders sensor at many partitions, on the real broker: one Kafka client per tick.

A tick that opened a client per partition (as it once did: N + 2 a tick) costs connections
and round trips that grow with the topic; the sensor now asks one consumer batched questions.
What must hold: the clients a tick opens do not depend on the partition count, and every
partition with work gets its range, full or timed out.
"""

from collections import Counter

import dagster as dg
import pytest

from devstack.orders_load import produce_orders
from integration_patterns.defs.messaging.sensor import kafka_orders_sensor
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns_tests.conftest import kafka_from_env

CLIENTS: Counter[str] = Counter()


class CountingKafka(KafkaResource):
    """The real resource, counting the clients it opens (by kind)."""

    def consumer(self, *, group_id: str, **overrides):
        CLIENTS["consumer"] += 1
        return super().consumer(group_id=group_id, **overrides)

    def admin(self):
        CLIENTS["admin"] += 1
        return super().admin()

    def producer(self, **overrides):
        CLIENTS["producer"] += 1
        return super().producer(**overrides)


def tick(stream: OrdersStreamResource) -> tuple[dg.SensorResult | dg.SkipReason, int]:
    """One sensor evaluation and the number of Kafka clients it opened."""
    kafka = CountingKafka(bootstrap_servers=kafka_from_env().bootstrap_servers)
    CLIENTS.clear()
    context = dg.build_sensor_context(resources={"kafka": kafka, "orders_stream": stream})
    result = kafka_orders_sensor(context)
    return result, sum(CLIENTS.values())


def stream_for(topic: str, **overrides) -> OrdersStreamResource:
    return OrdersStreamResource(
        **{"topic": topic, "group_id": f"{topic}-group", "batch_size": 20, **overrides}
    )


@pytest.mark.parametrize("partitions", [1, 32])
def test_one_client_per_tick_and_every_partition_dispatched(kafka, unique, partitions):
    topic = f"orders-many-{partitions}-{unique}"
    # 30 messages per partition: one full range of 20 and a partial one of 10.
    produce_orders(kafka, topic=topic, count=30 * partitions, partitions=partitions)

    # Full ranges only: the partial ones are young (an hour's timeout).
    full, clients = tick(stream_for(topic, batch_timeout_s=3600))
    assert clients == 1
    assert isinstance(full, dg.SensorResult)
    assert sorted(r.run_key for r in full.run_requests) == sorted(
        f"{topic}:{p}:0-20" for p in range(partitions)
    )

    # With no timeout, the partial ranges of every partition go too, in the same one client.
    everything, clients = tick(stream_for(topic, batch_timeout_s=0))
    assert clients == 1
    assert isinstance(everything, dg.SensorResult)
    keys = {r.run_key for r in everything.run_requests}
    ranges = [(0, 20), (20, 30)]
    assert keys == {f"{topic}:{p}:{s}-{e}" for p in range(partitions) for s, e in ranges}
    tags = {r.tags["kafka/topic_partition"] for r in everything.run_requests}
    assert tags == {f"{topic}:{p}" for p in range(partitions)}


def test_missing_topic_is_a_skip_with_one_client(unique):
    result, clients = tick(stream_for(f"orders-absent-{unique}"))
    assert isinstance(result, dg.SkipReason) and "does not exist" in (result.skip_message or "")
    assert clients == 1
