"""Turn new Kafka offsets into replayable batch runs, one per offset range.

Per partition, the work still to dispatch starts at the later of the sensor's cursor (what
it already dispatched) and the group's committed offset (what runs finished), and ends at
the high watermark. Full ranges of ``batch_size`` go out at once; a partial range waits
until its oldest message is older than ``batch_timeout_s``. Each range's ``run_key`` is
``<topic>:<partition>:<start>-<end>``, so a tick that is evaluated twice never launches a
range twice, and a run carries its range in its config so it can be re-executed exactly.

A tick opens one Kafka client whatever the partition count and asks it a fixed number of
batched questions (partitions, committed offsets, watermarks, the age of pending ranges), so
a topic of 32 partitions costs about what one of 1 does. Ranges of different partitions run
in parallel up to the run queue's limit; ranges of one partition run one at a time, in order
(dagster.yaml's ``kafka/topic_partition`` limit).

A partition whose next uncommitted range has a failed run is stalled: the sensor sends it
no new ranges (they could not commit) and names the range and the run in its skip reason.
"""

import json
import time

import dagster as dg

from integration_patterns.defs.messaging.batch_job import kafka_orders_batch
from integration_patterns.defs.messaging.stalls import PARTITION_TAG, RANGE_TAG, find_stall
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource


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
    # By name, not the job object: Dagster 1.13 re-creates a sensor that holds an op job
    # when it binds the job's resources, and that copy raises a beta warning for the
    # sensor's (empty) owners. The job itself is loaded from batch_job.py.
    job_name=kafka_orders_batch.name,
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
    requests: list[dg.RunRequest] = []
    lag: dict[int, int] = {}
    stalls: list[str] = []
    with kafka.offset_reader(group_id=orders_stream.group_id, topic=topic) as offsets:
        partitions = offsets.partitions()
        if not partitions:
            return dg.SkipReason(f"topic {topic!r} does not exist yet")
        committed = offsets.committed(partitions)
        watermarks = offsets.watermarks(partitions)
        # The cap is shared fairly: a hot partition cannot take every slot of every tick.
        per_partition = max(1, -(-orders_stream.max_runs_per_tick // len(partitions)))
        partial: dict[int, tuple[int, int]] = {}  # partition -> (start, high) of a short range
        for partition in partitions:
            emitted = 0
            low, high = watermarks[partition]
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
                if end - start < orders_stream.batch_size:
                    partial[partition] = (start, end)
                    break
                requests.append(_run_request(topic, partition, start, end))
                emitted += 1
                start = end
            cursor[str(partition)] = start
        if partial:
            # A short range goes out once its oldest message is older than the timeout:
            # the first offset stamped at or after the cut-off is past its start (or none is).
            cutoff_ms = int((time.time() - orders_stream.batch_timeout_s) * 1000)
            first_recent = offsets.offsets_at(dict.fromkeys(partial, cutoff_ms))
            for partition, (start, end) in partial.items():
                found = first_recent[partition]
                if found < 0 or found > start:
                    requests.append(_run_request(topic, partition, start, end))
                    cursor[str(partition)] = end
    context.log.info(f"{topic} lag per partition (high watermark - committed): {lag}")
    for stall in stalls:
        context.log.warning(stall)
    if not requests:
        reason = f"no complete or timed-out range; lag per partition: {lag}"
        return dg.SkipReason("; ".join([*stalls, reason]))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))
