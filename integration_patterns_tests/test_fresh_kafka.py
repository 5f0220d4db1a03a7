"""A broker that has only just started: the first sensor tick and range run must work.

On a new machine the first `make demo` failed with NOT_COORDINATOR: the broker answered
metadata while its group coordinator was still loading. This test starts a private,
never-used broker (own ports, own data dir, the shared jars; the shared broker is never
touched), and asks for committed offsets the moment its port opens, then runs the orders
sensor and a range against it. It also checks that the services manager only reports the
broker ready once a consumer-group round trip works.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack import services
from devstack.harness import free_port, port_open
from devstack.orders_load import produce_orders
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns_tests.conftest import PROJECT
from integration_patterns_tests.test_messaging import drain, make_stream, run_range, sensor_tick


@pytest.fixture
def fresh_broker(tmp_path: Path):
    """Start `services up kafka` in a private DEVSTACK_HOME; yield (port, the manager)."""
    libs = tmp_path / "kafka-libs"
    libs.mkdir()
    # The jars come from the services manager (fetched if this checkout has none yet: the
    # shared broker may have been started by another checkout).
    for jar in services.maven_libs("kafka").glob("*.jar"):
        (libs / jar.name).symlink_to(jar)  # the shared jars, read-only
    (libs / ".complete").touch()
    port = free_port(span=2)  # the controller listens on port + 1
    env = {**os.environ, "DEVSTACK_HOME": str(tmp_path), "KAFKA_PORT": str(port)}
    manager = subprocess.Popen(
        [sys.executable, "-m", "devstack.services", "up", "kafka"],
        cwd=PROJECT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield port, manager
    manager.kill()
    subprocess.run(
        [sys.executable, "-m", "devstack.services", "down", "kafka"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.timeout(240)
def test_first_tick_on_a_just_started_broker(fresh_broker, rabbitmq, unique, record_property):
    port, manager = fresh_broker
    deadline = time.monotonic() + 120
    while not port_open(port):
        assert manager.poll() is None, manager.stderr.read() if manager.stderr else ""
        assert time.monotonic() < deadline, "the private broker never opened its port"
        time.sleep(0.1)

    # The moment the port opens: the call that failed on the first `make demo`.
    kafka = KafkaResource(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_s=30)
    stream = make_stream(unique, batch_size=200)
    started = time.monotonic()
    committed = kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0])
    first_answer_s = time.monotonic() - started
    assert committed == {0: -1001}

    # The manager reports ready only after its own consumer-group round trip.
    _out, err = manager.communicate(timeout=120)
    assert manager.returncode == 0, err
    assert "kafka ready" in err

    produce_orders(kafka, topic=stream.topic, count=200)
    result = sensor_tick(stream, kafka)
    assert [r.run_key for r in result.run_requests] == [f"{stream.topic}:0:0-200"]
    try:
        run = run_range(stream, kafka, rabbitmq, 0, 0, 200)
        assert run.success
        assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {
            0: 200
        }
        outcomes = drain(rabbitmq, stream.results_queue) + drain(rabbitmq, stream.dead_letter_queue)
        assert len(outcomes) == 200
    finally:
        with rabbitmq.channel() as channel:
            for queue in (stream.results_queue, stream.dead_letter_queue, stream.parking_queue):
                channel.queue_delete(queue)
            for exchange in (stream.results_exchange, stream.dead_letter_exchange):
                channel.exchange_delete(exchange)
    record_property("first_committed_answer_s", round(first_answer_s, 1))
    sys.stderr.write(f"first committed() answered after {first_answer_s:.1f}s\n")
