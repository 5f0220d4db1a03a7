"""Demo of the message-queue pattern: produce orders, let the sensor cut ranges, run them."""

import dagster as dg

from devstack.orders_load import produce_orders
from integration_patterns.definitions import defs
from integration_patterns.defs.messaging.sensor import kafka_orders_sensor
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.rabbitmq import RabbitMQResource


def run_demo(instance: dg.DagsterInstance, count: int = 2000) -> str:
    """Produce ``count`` orders (5% poison), evaluate the sensor once, execute its runs."""
    kafka = KafkaResource.from_env()
    rabbitmq = RabbitMQResource.from_env()
    # The sensor as deployed, but dispatching partial ranges at once for the demo.
    stream = OrdersStreamResource.from_env(batch_size=1000, batch_timeout_s=0)
    load = produce_orders(kafka, topic=stream.topic, count=count, poison_ratio=0.05)
    lines = [f"produced {load.produced} orders to {stream.topic} ({len(load.poison_ids)} poison)"]
    context = dg.build_sensor_context(
        instance=instance, resources={"kafka": kafka, "orders_stream": stream}
    )
    tick = kafka_orders_sensor(context)
    if isinstance(tick, dg.SkipReason):
        return "\n".join([*lines, f"sensor skipped: {tick.skip_message}"])
    assert isinstance(tick, dg.SensorResult)
    job = defs().resolve_job_def("kafka_orders_batch")
    for request in tick.run_requests or []:
        result = job.execute_in_process(
            run_config=request.run_config, instance=instance, tags=request.tags
        )
        summary = result.output_for_node("process_order_batch")
        lines.append(
            f"  run {result.run_id[:8]} {request.run_key}: {summary['results']} results, "
            f"{summary['failures']} dead letters, committed offset {summary['committed_offset']}"
        )
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
        for queue in (stream.results_queue, stream.dead_letter_queue):
            depth = channel.queue_declare(queue, passive=True).method.message_count
            lines.append(f"  queue {queue}: {depth} messages waiting")
    return "\n".join(lines)
