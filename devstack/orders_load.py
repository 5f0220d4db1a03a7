"""Produce sample orders, valid and poison, to Kafka (demo, tests and benchmark).

``python -m devstack.orders_load --count 10000 --poison 0.05``

Deterministic from a seed: the same arguments produce the same messages, and exactly
``round(count * poison)`` of them are poison, of four kinds (unparsable bytes, an unknown
type, a missing field, an invalid item), so a test can predict every outcome.
"""

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass

from integration_patterns.resources.kafka import KafkaResource

POISON_KINDS = ("unparsable", "unknown_type", "missing_field", "invalid_item")


@dataclass(frozen=True)
class LoadReport:
    """What was produced: totals and the order ids of the poison messages."""

    produced: int
    poison_ids: frozenset[str]


def order_payload(order_id: str, rng: random.Random, poison: str = "") -> bytes:
    """One order event of about 200 bytes, or a poison variant of it."""
    if poison == "unparsable":
        return b'{"type": "order.created", "order_id": "' + order_id.encode() + b'", '
    order = {
        "type": "order.created",
        "order_id": order_id,
        "customer_id": rng.randint(1, 100_000),
        "currency": "EUR",
        "items": [
            {
                "sku": f"SKU-{rng.randint(1, 9999):04d}",
                "quantity": rng.randint(1, 5),
                "unit_price": f"{rng.uniform(1, 200):.2f}",
            }
            for _ in range(rng.randint(1, 2))
        ],
    }
    if poison == "unknown_type":
        order["type"] = "order.teleported"
    elif poison == "missing_field":
        del order["customer_id"]
    elif poison == "invalid_item":
        order["items"][0]["quantity"] = -1
    return json.dumps(order).encode()


def produce_orders(
    kafka: KafkaResource,
    *,
    topic: str,
    count: int,
    poison_ratio: float = 0.05,
    partitions: int = 1,
    seed: int = 7,
) -> LoadReport:
    """Create the topic if needed and produce ``count`` orders spread over its partitions."""
    kafka.ensure_topic(topic, partitions=partitions)
    rng = random.Random(seed)
    poison_at = set(rng.sample(range(count), round(count * poison_ratio)))
    producer = kafka.producer(**{"linger.ms": 20, "batch.size": 1_000_000})
    poison_ids = set()
    for i in range(count):
        order_id = f"order-{seed}-{i}"
        poison = POISON_KINDS[i % len(POISON_KINDS)] if i in poison_at else ""
        if poison:
            poison_ids.add(order_id)
        while True:
            try:
                producer.produce(
                    topic,
                    key=order_id,
                    value=order_payload(order_id, rng, poison),
                    partition=i % partitions,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} orders were not delivered to Kafka")
    return LoadReport(produced=count, poison_ids=frozenset(poison_ids))


def main() -> int:
    """Command line: produce sample orders to the configured topic."""
    parser = argparse.ArgumentParser(description="Produce sample orders to Kafka.")
    parser.add_argument("--topic", default=os.environ.get("ORDERS_TOPIC", "orders"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--poison", type=float, default=0.05)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    kafka = KafkaResource.from_env()
    report = produce_orders(
        kafka,
        topic=args.topic,
        count=args.count,
        poison_ratio=args.poison,
        partitions=args.partitions,
        seed=args.seed,
    )
    sys.stdout.write(f"produced {report.produced} orders ({len(report.poison_ids)} poison)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
