"""Messages/s through the Kafka -> RabbitMQ batch job against a raw pipeline, same run.

Ours: the ``kafka_orders_batch`` job (Dagster in-process execution, order validation,
results and dead letters, commit after confirm) over a 100,000-message range.
Baseline ("raw pipeline"): the same range read with a bare confluent-kafka consumer,
``json.loads`` per message, and published with asynchronous confirms on pika's
SelectConnection (the project's ConfirmedStreamPublisher), no Dagster, no validation.
Both publish to the same exchange; the queues are purged between repetitions.

Also: peak RSS of a job process over a 20,000- and a 100,000-message range (memory must
not grow with the size of the range).
"""

import json
import subprocess
import sys
import textwrap
import time
import uuid

from confluent_kafka import TopicPartition

from bench.report import Comparison, write
from devstack.orders_load import produce_orders
from integration_patterns.defs.messaging.batch_job import kafka_orders_batch
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.rabbitmq_publisher import OutgoingMessage

COUNT = 100_000
REPETITIONS = 3


def _resources() -> tuple[KafkaResource, RabbitMQResource]:
    kafka = KafkaResource.from_env()
    rabbitmq = RabbitMQResource.from_env()
    return kafka, rabbitmq


def _stream(suffix: str) -> OrdersStreamResource:
    return OrdersStreamResource(
        topic=f"bench-orders-{suffix}",
        group_id=f"bench-group-{suffix}-{uuid.uuid4().hex[:6]}",
        results_exchange=f"bench-results-{suffix}",
        results_queue=f"bench-results-{suffix}",
        dead_letter_exchange=f"bench-dlx-{suffix}",
        dead_letter_queue=f"bench-dead-{suffix}",
    )


def _run_ours(kafka, rabbitmq, stream, count) -> float:
    config = {"topic": stream.topic, "partition": 0, "start_offset": 0, "end_offset": count}
    started = time.perf_counter()
    result = kafka_orders_batch.execute_in_process(
        run_config={"ops": {"process_order_batch": {"config": config}}},
        resources={"kafka": kafka, "rabbitmq": rabbitmq, "orders_stream": stream},
    )
    assert result.success
    return count / (time.perf_counter() - started)


def _run_raw(kafka, rabbitmq, stream, count) -> float:
    started = time.perf_counter()
    consumer = kafka.consumer(group_id=f"raw-{uuid.uuid4().hex[:6]}")
    consumer.assign([TopicPartition(stream.topic, 0, 0)])

    def messages():
        seen = 0
        while seen < count:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is not None or message.offset() >= count:
                    continue
                seen += 1
                body = json.dumps(json.loads(message.value())).encode()
                yield OutgoingMessage(
                    exchange=stream.results_exchange,
                    routing_key=stream.results_routing_key,
                    body=body,
                    message_id=f"{stream.topic}-0-{message.offset()}",
                )

    rabbitmq.stream_publisher(window=1000).publish(messages())  # the bench sends no poison
    consumer.commit(offsets=[TopicPartition(stream.topic, 0, count)], asynchronous=False)
    consumer.close()
    return count / (time.perf_counter() - started)


def _purge(rabbitmq, stream) -> None:
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
        channel.queue_purge(stream.results_queue)
        channel.queue_purge(stream.dead_letter_queue)


def _peak_rss_mb(stream, count) -> float:
    script = textwrap.dedent(
        f"""
        import sys
        from bench.messaging import _resources, _run_ours
        from integration_patterns.defs.messaging.stream import OrdersStreamResource
        stream = OrdersStreamResource.model_validate_json({stream.model_dump_json()!r})
        kafka, rabbitmq = _resources()
        _run_ours(kafka, rabbitmq, stream, {count})
        # VmHWM, not ru_maxrss: the latter carries the parent's peak across fork and exec.
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        sys.stdout.write(hwm.split()[1])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return round(int(out.strip().splitlines()[-1]) / 1024, 1)


def main() -> None:
    """Produce once, then alternate ours and the raw pipeline over the same range."""
    kafka, rabbitmq = _resources()
    suffix = uuid.uuid4().hex[:6]
    stream = _stream(suffix)
    produce_orders(kafka, topic=stream.topic, count=COUNT, poison_ratio=0.0)
    ours, raw = [], []
    for _ in range(REPETITIONS):
        _purge(rabbitmq, stream)
        ours.append(_run_ours(kafka, rabbitmq, _stream_with_group(stream), COUNT))
        _purge(rabbitmq, stream)
        raw.append(_run_raw(kafka, rabbitmq, stream, COUNT))
    _purge(rabbitmq, stream)
    small, large = _peak_rss_mb(stream, 20_000), _peak_rss_mb(stream, COUNT)
    _purge(rabbitmq, stream)
    ours_median, raw_median = sorted(ours)[1], sorted(raw)[1]
    write(
        "messaging",
        [
            Comparison(
                name="batch job vs raw pipeline",
                unit="msg/s",
                ours=ours_median,
                baseline_name="raw pipeline",
                baseline=raw_median,
                goal=0.5,
                extra={
                    "messages": COUNT,
                    "ours_samples_msg_s": [round(x) for x in ours],
                    "raw_samples_msg_s": [round(x) for x in raw],
                    "absolute_goal_msg_s": 10_000,
                    "absolute_goal_met": ours_median >= 10_000,
                    "peak_rss_mb_20k_range": small,
                    "peak_rss_mb_100k_range": large,
                },
            )
        ],
    )
    with rabbitmq.channel() as channel:
        for queue in (stream.results_queue, stream.dead_letter_queue):
            channel.queue_delete(queue)


def _stream_with_group(stream: OrdersStreamResource) -> OrdersStreamResource:
    """A fresh consumer group each repetition, so the commit guard never short-cuts."""
    data = json.loads(stream.model_dump_json())
    data["group_id"] = f"{data['group_id']}-{uuid.uuid4().hex[:4]}"
    return OrdersStreamResource(**data)
