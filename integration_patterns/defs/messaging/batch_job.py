"""One run = one Kafka offset range: read it, process it, publish outcomes, then commit.

The order of those steps is the delivery guarantee. The end offset is committed for the
consumer group only after RabbitMQ has confirmed every result and dead letter of the range,
so a crash at any point leaves the range uncommitted and a re-execution (from the UI, with
the same run config) reads exactly the same messages again. Downstream, duplicates carry
the same ``message_id`` (``<topic>-<partition>-<offset>``) and can be dropped by it.

The range streams through in chunks: memory is bounded by the read chunk and the publish
window, not by the size of the range.

In the asset graph the job is the edge from the Kafka topic to the two exchanges
(``external.py``): once the range is committed, the run reports a materialization of each
exchange it published to and an observation of the topic, all carrying the offset range.
It stays an op job (not an asset) because every run needs its range in config: the sensor's
run config, re-execution from the UI and the tests all address ``process_order_batch``.
"""

import json
import time
from collections import Counter
from collections.abc import Iterator

import dagster as dg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import Field

from integration_patterns.defs.messaging.external import (
    kafka_orders_topic,
    orders_dead_letter_exchange,
    orders_results_exchange,
)
from integration_patterns.defs.messaging.processing import process_order
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.rabbitmq_publisher import OutgoingMessage
from integration_patterns.resources.transient import TRANSIENT_RETRY_POLICY, retry_transient


class OffsetRange(dg.Config):
    """A half-open offset range [start_offset, end_offset) of one partition."""

    topic: str = Field(description="Kafka topic.")
    partition: int = Field(description="Partition id.")
    start_offset: int = Field(description="First offset to process.")
    end_offset: int = Field(description="One past the last offset; committed when done.")


class RangeNotReadableError(RuntimeError):
    """The range's messages stopped arriving (deleted by retention, broker gone, ...)."""


class PredecessorNotCommittedError(RuntimeError):
    """An earlier range of the partition is not committed yet; this one must wait for it."""


def check_predecessor(kafka: KafkaResource, consumer: Consumer, config: OffsetRange) -> int | None:
    """Refuse a range whose predecessor is not committed; return the committed offset.

    Committing ``end`` over an uncommitted gap would mark the gap's messages processed
    when they were not (e.g. range A failed, then range B ran). Re-running a range the
    group has already passed is a replay and is allowed; it commits nothing.
    """
    partition = TopicPartition(config.topic, config.partition)
    committed = kafka.committed_offsets(consumer, [partition])[0].offset
    if committed >= config.start_offset:
        return committed
    if committed < 0:  # nothing committed yet: only the partition's first range may go
        low, _high = kafka.retrying(
            lambda timeout: consumer.get_watermark_offsets(partition, timeout=timeout)
        )
        if config.start_offset <= low:
            return None
        behind = f"the group has no committed offset and the partition starts at {low}"
    else:
        behind = f"the group's committed offset is {committed}"
    raise PredecessorNotCommittedError(
        f"{config.topic}[{config.partition}] range {config.start_offset}-{config.end_offset} "
        f"cannot start: {behind}. Re-execute the run of the earlier range(s) first, then "
        "this one."
    )


def read_range(
    consumer: Consumer, config: OffsetRange, *, chunk: int, idle_timeout_s: float
) -> Iterator[Message]:
    """Yield the messages of exactly the configured range, in offset order."""
    tp = TopicPartition(config.topic, config.partition, config.start_offset)
    consumer.assign([tp])
    position, last_progress = config.start_offset, time.monotonic()
    while position < config.end_offset:
        batch = consumer.consume(num_messages=chunk, timeout=0.5)
        for message in batch:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 (librdkafka names it so)
                    continue
                raise KafkaException(error)
            offset = message.offset()
            if offset is None:  # only error events lack an offset, and those were handled
                continue
            if offset >= config.end_offset:
                return
            position = offset + 1
            yield message
        if batch:
            last_progress = time.monotonic()
            continue
        # Control records (transaction markers) and compacted gaps are never delivered:
        # the consumer's position says whether the range is really done.
        fetched = consumer.position([TopicPartition(config.topic, config.partition)])[0]
        if fetched.offset >= config.end_offset:
            return
        if time.monotonic() - last_progress > idle_timeout_s:
            raise RangeNotReadableError(
                f"{config.topic}[{config.partition}] stopped at offset {position} before "
                f"{config.end_offset}: no message for {idle_timeout_s:.0f}s"
            )


@dg.op(
    pool="kafka",
    tags={"kind": "kafka"},
    out=dg.Out(dict, description="Counts and offsets of the processed range."),
    # A broker that is down or restarting: retry with backoff (nothing was committed, the
    # same message ids are published again). Anything else fails at once.
    retry_policy=TRANSIENT_RETRY_POLICY,
)
@retry_transient
def process_order_batch(
    context: dg.OpExecutionContext,
    config: OffsetRange,
    kafka: KafkaResource,
    rabbitmq: RabbitMQResource,
    orders_stream: OrdersStreamResource,
) -> dg.Output[dict]:
    """Process one offset range of the orders topic into results and dead letters."""
    started = time.monotonic()
    with rabbitmq.channel() as channel:
        orders_stream.declare_topology(rabbitmq, channel)

    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    consumer = kafka.consumer(group_id=orders_stream.group_id)
    try:
        committed_before = check_predecessor(kafka, consumer, config)

        def outgoing() -> Iterator[OutgoingMessage]:
            for message in read_range(
                consumer,
                config,
                chunk=orders_stream.read_chunk,
                idle_timeout_s=orders_stream.read_idle_timeout_s,
            ):
                offset = message.offset()
                message_id = f"{config.topic}-{config.partition}-{offset}"
                outcome = process_order(message.value())
                counts["messages"] += 1
                if outcome.result is not None:
                    counts["results"] += 1
                    # No headers on results: the message id and body say where it came
                    # from, and encoding an AMQP table per message costs a third of
                    # pika's publish time.
                    yield OutgoingMessage(
                        exchange=orders_stream.results_exchange,
                        routing_key=orders_stream.results_routing_key,
                        body=json.dumps(outcome.result | {"offset": offset}).encode(),
                        message_id=message_id,
                    )
                else:
                    counts["failures"] += 1
                    reasons[outcome.error.split(":")[0]] += 1
                    yield OutgoingMessage(
                        exchange=orders_stream.dead_letter_exchange,
                        routing_key=orders_stream.dead_letter_routing_key,
                        body=message.value() or b"",  # the original bytes, for replay
                        message_id=message_id,
                        headers={
                            "x-source-topic": config.topic,
                            "x-source-partition": config.partition,
                            "x-source-offset": offset,
                            "x-run-id": context.run_id,
                            "x-error": outcome.error,
                            "x-error-type": outcome.error_type,
                        },
                    )

        report = rabbitmq.stream_publisher(window=orders_stream.publish_window).publish(outgoing())
        # Every outcome is confirmed durable: only now may the group move past the range.
        committed = committed_before if committed_before is not None else -1
        if config.end_offset > committed:  # a replay never moves the group backwards
            kafka.commit(
                consumer, [TopicPartition(config.topic, config.partition, config.end_offset)]
            )
            committed = config.end_offset
    finally:
        consumer.close()

    seconds = time.monotonic() - started
    summary = {
        "topic": config.topic,
        "partition": config.partition,
        "start_offset": config.start_offset,
        "end_offset": config.end_offset,
        "messages": counts["messages"],
        "results": counts["results"],
        "failures": counts["failures"],
        "confirmed": report.confirmed,
        "committed_offset": committed,
    }
    context.log.info(
        f"{config.topic}[{config.partition}] {config.start_offset}-{config.end_offset}: "
        f"{counts['results']} results, {counts['failures']} dead letters, committed {committed}"
    )
    for event in lineage_events(orders_stream, summary):
        context.log_event(event)
    return dg.Output(
        summary,
        metadata={
            **summary,
            "failure_reasons": dg.MetadataValue.json(dict(reasons)),
            "seconds": round(seconds, 3),
            "messages_per_second": round(counts["messages"] / seconds, 1) if seconds else 0.0,
        },
    )


def lineage_events(
    stream: OrdersStreamResource, summary: dict
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """What a committed range did to the stream's assets, each event carrying the range.

    An exchange is materialized only when the range published to it; the topic is
    observed with the group's committed offset for the partition.
    """
    source = {
        "topic": summary["topic"],
        "partition": summary["partition"],
        "start_offset": summary["start_offset"],
        "end_offset": summary["end_offset"],
    }
    events: list[dg.AssetMaterialization | dg.AssetObservation] = [
        dg.AssetObservation(
            asset_key=kafka_orders_topic.key,
            metadata={**source, "committed_offset": summary["committed_offset"]},
        )
    ]
    for spec, exchange, count in (
        (orders_results_exchange, stream.results_exchange, summary["results"]),
        (orders_dead_letter_exchange, stream.dead_letter_exchange, summary["failures"]),
    ):
        if count:
            events.append(
                dg.AssetMaterialization(
                    asset_key=spec.key,
                    metadata={**source, "exchange": exchange, "messages": count},
                )
            )
    return events


@dg.job(
    description="Process one Kafka offset range of orders into RabbitMQ results and dead "
    "letters; commits the range's end offset once every publish is confirmed.",
    tags={"pattern": "messaging"},
    # One op: a step process of its own would load the location a second time.
    executor_def=dg.in_process_executor,
)
def kafka_orders_batch() -> None:
    """A single-op job: the range streams through one process, never materialized whole."""
    process_order_batch()
