"""Kafka offset ranges -> processing -> RabbitMQ results and dead letters, on the real brokers.

What must hold: every offset ends up in the results queue or the dead-letter queue (with
the headers that let someone replay it), the group's offset is committed only after every
publish is confirmed, a failed or killed run re-executes the same range without losing
anything, and the sensor never dispatches a range twice.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import dagster as dg
import pytest

from devstack.orders_load import produce_orders
from integration_patterns.defs.messaging.batch_job import kafka_orders_batch
from integration_patterns.defs.messaging.processing import process_order
from integration_patterns.defs.messaging.sensor import kafka_orders_sensor
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns_tests.conftest import PROJECT, rabbitmq_from_env


def make_stream(unique: str, **overrides) -> OrdersStreamResource:
    """An orders stream with its own topic, group, exchanges and queues."""
    return OrdersStreamResource(
        **{
            "topic": f"orders-{unique}",
            "group_id": f"orders-group-{unique}",
            "batch_size": 1000,
            "batch_timeout_s": 3600,
            "results_exchange": f"results-{unique}",
            "results_queue": f"results-{unique}",
            "dead_letter_exchange": f"dlx-{unique}",
            "dead_letter_queue": f"dead-{unique}",
            "parking_queue": f"parking-{unique}",
            "redrive_table": f"redrive_{unique}",
            "read_idle_timeout_s": 10,
            **overrides,
        }
    )


@pytest.fixture
def stream(unique, rabbitmq):
    """The test's own stream; its RabbitMQ topology is deleted afterwards."""
    resource = make_stream(unique)
    yield resource
    with rabbitmq.channel() as channel:
        for queue in (resource.results_queue, resource.dead_letter_queue, resource.parking_queue):
            channel.queue_delete(queue)
        for exchange in (resource.results_exchange, resource.dead_letter_exchange):
            channel.exchange_delete(exchange)


def run_range(stream, kafka, rabbitmq, partition, start, end, instance=None):
    return kafka_orders_batch.execute_in_process(
        run_config={
            "ops": {
                "process_order_batch": {
                    "config": {
                        "topic": stream.topic,
                        "partition": partition,
                        "start_offset": start,
                        "end_offset": end,
                    }
                }
            }
        },
        resources={"kafka": kafka, "rabbitmq": rabbitmq, "orders_stream": stream},
        instance=instance,
        raise_on_error=False,
    )


def run_request(stream, kafka, rabbitmq, request, instance):
    """The batch run a sensor asked for, as the daemon would launch it (its config and tags)."""
    return kafka_orders_batch.execute_in_process(
        run_config=request.run_config,
        resources={"kafka": kafka, "rabbitmq": rabbitmq, "orders_stream": stream},
        instance=instance,
        tags=request.tags,
        raise_on_error=False,
    )


def drain(rabbitmq, queue):
    """Every message in ``queue`` as (message_id, headers, body), acknowledged."""
    out = []
    with rabbitmq.channel() as channel:
        for method, props, body in channel.consume(queue, inactivity_timeout=1.0):
            if method is None:
                break
            out.append((props.message_id, props.headers or {}, body))
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    return out


def sensor_tick(stream, kafka, cursor=None, instance=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"kafka": kafka, "orders_stream": stream},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    return kafka_orders_sensor(context)


def test_poison_is_dead_lettered_and_offsets_committed(stream, kafka, rabbitmq):
    load = produce_orders(kafka, topic=stream.topic, count=2000, poison_ratio=0.05)
    result = sensor_tick(stream, kafka)
    assert isinstance(result, dg.SensorResult)
    keys = [r.run_key for r in result.run_requests]
    assert keys == [f"{stream.topic}:0:0-1000", f"{stream.topic}:0:1000-2000"]

    for request in result.run_requests:
        config = request.run_config["ops"]["process_order_batch"]["config"]
        run = run_range(stream, kafka, rabbitmq, 0, config["start_offset"], config["end_offset"])
        assert run.success
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {
        0: 2000
    }

    results = drain(rabbitmq, stream.results_queue)
    dead = drain(rabbitmq, stream.dead_letter_queue)
    assert len(results) == 1900 and len(dead) == 100
    # Every offset exactly once, in one queue or the other.
    ids = sorted(int(m[0].rsplit("-", 1)[1]) for m in results + dead)
    assert ids == list(range(2000))
    dead_order_ids = set()
    for message_id, headers, body in dead:
        assert headers["x-source-topic"] == stream.topic
        assert headers["x-source-partition"] == 0
        assert message_id == f"{stream.topic}-0-{headers['x-source-offset']}"
        assert headers["x-error"] and headers["x-run-id"]
        try:
            dead_order_ids.add(json.loads(body)["order_id"])
        except json.JSONDecodeError:
            dead_order_ids.add(body.decode().split('"order_id": "')[1].split('"')[0])
    assert dead_order_ids == set(load.poison_ids)
    result_body = json.loads(results[0][2])
    assert set(result_body) >= {"order_id", "customer_id", "total", "item_count", "offset"}


def test_sensor_twice_over_the_same_state_emits_no_second_run(stream, kafka):
    produce_orders(kafka, topic=stream.topic, count=1500, partitions=1)
    first = sensor_tick(stream, kafka)
    assert [r.run_key for r in first.run_requests] == [f"{stream.topic}:0:0-1000"]
    # The partial range (500 messages) waits for its batch timeout.
    second = sensor_tick(stream, kafka, cursor=first.cursor)
    assert isinstance(second, dg.SkipReason)
    assert "lag per partition" in second.skip_message


def test_partial_batch_goes_once_its_oldest_message_times_out(stream, kafka, unique):
    produce_orders(kafka, topic=stream.topic, count=10)
    assert isinstance(sensor_tick(stream, kafka), dg.SkipReason)
    time.sleep(1.5)
    timed_out = make_stream(unique, batch_timeout_s=1.0)
    result = sensor_tick(timed_out, kafka)
    assert [r.run_key for r in result.run_requests] == [f"{stream.topic}:0:0-10"]


def test_partitions_get_independent_runs(stream, kafka, unique):
    produce_orders(kafka, topic=stream.topic, count=2400, partitions=3)  # 800 each
    fast = make_stream(unique, batch_size=500)
    result = sensor_tick(fast, kafka)
    keys = sorted(r.run_key for r in result.run_requests)
    assert keys == sorted(f"{stream.topic}:{p}:0-500" for p in range(3))
    tags = {r.tags["kafka/topic_partition"] for r in result.run_requests}
    assert len(tags) == 3


def test_dead_broker_fails_the_run_and_commits_nothing(stream, kafka, free_port):
    produce_orders(kafka, topic=stream.topic, count=100)
    dead = rabbitmq_from_env(port=free_port, socket_timeout_s=1)
    run = run_range(stream, kafka, dead, 0, 0, 100)
    assert not run.success
    committed = kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0])
    assert committed[0] < 0


def _rabbit_connection_pids(name: str) -> list[str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if name in line]


def test_connection_lost_mid_run_then_rerun_loses_nothing(stream, kafka, rabbitmq, unique):
    count = 60_000  # long enough that the run is still publishing when the link is cut
    produce_orders(kafka, topic=stream.topic, count=count, poison_ratio=0.05)
    name = f"conn-{unique}"
    tagged = rabbitmq_from_env(connection_name=name)
    closed: list[str] = []

    def break_connection():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with rabbitmq.channel() as channel:
                queued = channel.queue_declare(stream.results_queue, passive=True)
            if queued.method.message_count > 1000:
                for pid in _rabbit_connection_pids(name):
                    subprocess.run(
                        ["rabbitmqctl", "close_connection", pid, "test: broker went away"],
                        check=True,
                        capture_output=True,
                    )
                    closed.append(pid)
                return
            time.sleep(0.05)

    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
    breaker = threading.Thread(target=break_connection)
    breaker.start()
    run = run_range(stream, kafka, tagged, 0, 0, count)
    breaker.join()
    assert closed, "the run's connection was never found to be closed"
    assert not run.success
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0])[0] < 0

    rerun = run_range(stream, kafka, rabbitmq, 0, 0, count)
    assert rerun.success
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {
        0: count
    }
    seen = drain(rabbitmq, stream.results_queue) + drain(rabbitmq, stream.dead_letter_queue)
    offsets = {int(m[0].rsplit("-", 1)[1]) for m in seen}
    assert offsets == set(range(count))  # nothing lost
    # The first attempt's messages arrive again, each under its original message_id.
    assert len(seen) > count
    assert len({m[0] for m in seen}) == count


def test_killed_run_is_reexecuted_without_loss(stream, kafka, rabbitmq, unique):
    count = 60_000  # long enough that the run is still publishing when it is killed
    produce_orders(kafka, topic=stream.topic, count=count, poison_ratio=0.05)
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
    script = textwrap.dedent(
        f"""
        from integration_patterns_tests.conftest import kafka_from_env, rabbitmq_from_env
        from integration_patterns_tests.test_messaging import make_stream, run_range
        stream = make_stream({unique!r})
        run_range(stream, kafka_from_env(), rabbitmq_from_env(), 0, 0, {count})
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with rabbitmq.channel() as channel:
                queued = channel.queue_declare(stream.results_queue, passive=True)
            if queued.method.message_count > 2000:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0])[0] < 0

    rerun = run_range(stream, kafka, rabbitmq, 0, 0, count)
    assert rerun.success
    seen = drain(rabbitmq, stream.results_queue) + drain(rabbitmq, stream.dead_letter_queue)
    assert {int(m[0].rsplit("-", 1)[1]) for m in seen} == set(range(count))
    assert len({m[0] for m in seen}) == count


def test_a_committed_range_is_reported_on_the_topic_and_exchange_assets(stream, kafka, rabbitmq):
    # The lineage of the pattern: the run materializes each exchange it published to and
    # observes the topic, every event naming the range (external.py's asset keys).
    load = produce_orders(kafka, topic=stream.topic, count=200, poison_ratio=0.05)
    run = run_range(stream, kafka, rabbitmq, 0, 0, 200)
    assert run.success
    failures = len(load.poison_ids)
    assert failures == 10
    materializations = [e.materialization for e in run.get_asset_materialization_events()]
    published = {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in materializations
    }
    source = {"topic": stream.topic, "partition": 0, "start_offset": 0, "end_offset": 200}
    assert published == {
        "orders_results_exchange": {
            **source,
            "exchange": stream.results_exchange,
            "messages": 200 - failures,
        },
        "orders_dead_letter_exchange": {
            **source,
            "exchange": stream.dead_letter_exchange,
            "messages": failures,
        },
    }
    observed = [
        (o.asset_key.to_user_string(), {k: v.value for k, v in o.metadata.items()})
        for o in run.asset_observations_for_node("process_order_batch")
    ]
    assert observed == [("kafka_orders_topic", {**source, "committed_offset": 200})]


def test_rerun_of_an_old_range_never_moves_the_group_backwards(stream, kafka, rabbitmq):
    produce_orders(kafka, topic=stream.topic, count=200, poison_ratio=0)
    assert run_range(stream, kafka, rabbitmq, 0, 0, 100).success
    assert run_range(stream, kafka, rabbitmq, 0, 100, 200).success
    assert run_range(stream, kafka, rabbitmq, 0, 0, 100).success  # replay from the UI
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {0: 200}


def test_a_range_never_commits_over_a_failed_predecessor(stream, kafka, rabbitmq, free_port):
    # Range A fails (dead broker); B must not commit 200 over A's uncommitted messages.
    produce_orders(kafka, topic=stream.topic, count=200, poison_ratio=0)
    dead = rabbitmq_from_env(port=free_port, socket_timeout_s=1)
    assert not run_range(stream, kafka, dead, 0, 0, 100).success
    b_first = run_range(stream, kafka, rabbitmq, 0, 100, 200)
    assert not b_first.success
    failure = b_first.get_step_failure_events()[0].event_specific_data.error.cause
    assert failure.cls_name == "PredecessorNotCommittedError"
    assert "Re-execute the run of the earlier range" in failure.message
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0])[0] < 0
    # Re-executing A and then B, as an operator would from the UI, completes the partition.
    assert run_range(stream, kafka, rabbitmq, 0, 0, 100).success
    assert run_range(stream, kafka, rabbitmq, 0, 100, 200).success
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {0: 200}
    seen = drain(rabbitmq, stream.results_queue)
    assert {int(m[0].rsplit("-", 1)[1]) for m in seen} == set(range(200))


@pytest.mark.parametrize(
    "payload, reason",
    [
        # each poison kind is dead-lettered with a reason naming what is wrong
        (b"", "empty payload"),
        (b'{"type": "order.created", ', "unparsable payload"),
        (b"[1, 2]", "not an object"),
        (b'{"type": "order.shipped"}', "unknown message type"),
        (b'{"type": "order.created", "order_id": "o"}', "missing field"),
        # a fractional or boolean quantity must not be truncated into a wrong total
        (
            b'{"type": "order.created", "order_id": "o", "customer_id": 1, "currency": "EUR",'
            b' "items": [{"quantity": 2.7, "unit_price": "1.00"}]}',
            "positive integer",
        ),
        (
            b'{"type": "order.created", "order_id": "o", "customer_id": 1, "currency": "EUR",'
            b' "items": [{"quantity": true, "unit_price": "1.00"}]}',
            "positive integer",
        ),
        (
            b'{"type": "order.created", "order_id": "o", "customer_id": 1, "currency": "EUR",'
            b' "items": [{"quantity": 1, "unit_price": "NaN"}]}',
            "non-negative number",
        ),
    ],
)
def test_poison_payloads_fail_with_a_reason(payload, reason):
    outcome = process_order(payload)
    assert outcome.result is None and reason in outcome.error


def test_valid_order_total():
    outcome = process_order(
        b'{"type": "order.created", "order_id": "o-1", "customer_id": 7, "currency": "EUR",'
        b' "items": [{"quantity": 3, "unit_price": "2.50"}, {"quantity": 1, "unit_price": "0.99"}]}'
    )
    assert outcome.result == {
        "order_id": "o-1",
        "customer_id": 7,
        "currency": "EUR",
        "item_count": 2,
        "total": "8.49",
    }


def test_a_hot_partition_cannot_take_every_slot(stream, kafka, unique):
    produce_orders(kafka, topic=stream.topic, count=3000, partitions=2)  # 1500 each
    capped = make_stream(unique, batch_size=100, max_runs_per_tick=4)
    result = sensor_tick(capped, kafka)
    by_partition = [r.tags["kafka/topic_partition"] for r in result.run_requests]
    assert sorted(by_partition) == sorted([f"{stream.topic}:0"] * 2 + [f"{stream.topic}:1"] * 2)
    # The next tick continues each partition where its own share stopped.
    following = sensor_tick(capped, kafka, cursor=result.cursor)
    assert {r.run_key for r in following.run_requests} == {
        f"{stream.topic}:{p}:{start}-{start + 100}" for p in (0, 1) for start in (200, 300)
    }
