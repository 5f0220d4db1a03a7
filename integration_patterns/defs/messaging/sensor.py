"""Turn new Kafka offsets into replayable batch runs, one per offset range.

Per partition, the work still to dispatch starts at the later of the sensor's cursor (what
it already dispatched) and the group's committed offset (what runs finished), and ends at
the high watermark. Full ranges of ``batch_size`` go out at once; a partial range waits
until its oldest message is older than ``batch_timeout_s``. Each range's ``run_key`` is
``<topic>:<partition>:<start>-<end>``, so a tick that is evaluated twice never launches a
range twice, and a run carries its range in its config so it can be re-executed exactly.

A partition whose next uncommitted range has a failed run is stalled: the sensor sends it
no new ranges (they could not commit) and names the range and the run in its skip reason.
"""

import json
import time

import dagster as dg
from confluent_kafka import TopicPartition

from integration_patterns.defs.messaging.batch_job import kafka_orders_batch
from integration_patterns.defs.messaging.stalls import PARTITION_TAG, RANGE_TAG, find_stall
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource


def _oldest_is_older_than(
    kafka: KafkaResource, topic: str, partition: int, start: int, age_s: float
) -> bool:
    """Whether the message at ``start`` is older than ``age_s``, without reading it.

    offsets_for_times gives the first offset stamped at or after a time: if that is past
    ``start`` (or there is none), the message at ``start`` is older.
    """
    consumer = kafka.consumer(group_id=f"{kafka.client_id}-timestamps")
    try:
        cutoff_ms = int((time.time() - age_s) * 1000)
        found = consumer.offsets_for_times(
            [TopicPartition(topic, partition, cutoff_ms)], timeout=kafka.request_timeout_s
        )[0].offset
    finally:
        consumer.close()
    return found < 0 or found > start


def _run_request(topic: str, partition: int, start: int, end: int) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{topic}:{partition}:{start}-{end}",
        run_config={
            "ops": {
                "process_order_batch": {
                    "config": {
                        "topic": topic,
                        "partition": partition,
                        "start_offset": start,
                        "end_offset": end,
                    }
                }
            }
        },
        # dagster.yaml limits runs per topic-partition to one at a time, so ranges of a
        # partition commit in order.
        tags={PARTITION_TAG: f"{topic}:{partition}", RANGE_TAG: f"{start}-{end}"},
    )


@dg.sensor(
    job=kafka_orders_batch,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Emits one kafka_orders_batch run per new offset range of the orders topic.",
)
def kafka_orders_sensor(
    context: dg.SensorEvaluationContext,
    kafka: KafkaResource,
    orders_stream: OrdersStreamResource,
) -> dg.SensorResult | dg.SkipReason:
    """Compare dispatched and committed offsets with the high watermarks per partition."""
    topic = orders_stream.topic
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    partitions = kafka.partitions(topic)
    if not partitions:
        return dg.SkipReason(f"topic {topic!r} does not exist yet")
    committed = kafka.committed(group_id=orders_stream.group_id, topic=topic, partitions=partitions)
    requests: list[dg.RunRequest] = []
    lag: dict[int, int] = {}
    stalls: list[str] = []
    # The cap is shared fairly: a hot partition cannot take every slot of every tick.
    per_partition = max(1, -(-orders_stream.max_runs_per_tick // len(partitions)))
    for partition in partitions:
        emitted = 0
        low, high = kafka.watermarks(topic, partition)
        done = committed.get(partition, -1)
        start = max(cursor.get(str(partition), 0), done if done >= 0 else low, low)
        lag[partition] = high - max(done, low)
        if cursor.get(str(partition), 0) > max(done, low):  # dispatched, not yet committed
            stall = find_stall(context.instance, topic, partition, max(done, low))
            if stall is not None:
                stalls.append(stall.describe())
                continue
        while start < high and emitted < per_partition:
            end = min(start + orders_stream.batch_size, high)
            partial = end - start < orders_stream.batch_size
            if partial and not _oldest_is_older_than(
                kafka, topic, partition, start, orders_stream.batch_timeout_s
            ):
                break
            requests.append(_run_request(topic, partition, start, end))
            emitted += 1
            start = end
        cursor[str(partition)] = start
    context.log.info(f"{topic} lag per partition (high watermark - committed): {lag}")
    for stall in stalls:
        context.log.warning(stall)
    if not requests:
        reason = f"no complete or timed-out range; lag per partition: {lag}"
        return dg.SkipReason("; ".join([*stalls, reason]))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))
