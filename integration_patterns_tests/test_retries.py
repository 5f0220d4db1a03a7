"""Transient failures retry by themselves; deterministic ones fail at once and stall visibly.

A broker that drops the first connection (a restart, a failover) must not need a human:
the step retries with backoff and the range completes. A failure that would repeat
(refused credentials, an uncommitted predecessor) must not be retried, and the partition
it holds back must be named, with its range and failed run, in the sensor's skip reason.
"""

import dagster as dg
import pytest

from devstack.flaky_proxy import flaky_proxy
from devstack.orders_load import produce_orders
from integration_patterns.resources.transient import is_transient
from integration_patterns_tests import test_messaging
from integration_patterns_tests.conftest import rabbitmq_from_env
from integration_patterns_tests.test_messaging import drain, run_range, run_request, sensor_tick

stream = test_messaging.stream  # the orders stream fixture with its own topic and queues


def _event_types(result) -> list[str]:
    return [event.event_type_value for event in result.all_events]


def test_a_dropped_connection_is_retried_and_the_range_completes(stream, kafka, rabbitmq):
    produce_orders(kafka, topic=stream.topic, count=100, poison_ratio=0.0)
    with flaky_proxy((rabbitmq.host, rabbitmq.port), drop_first=1) as proxy:
        flaky = rabbitmq_from_env(port=proxy.port)
        run = run_range(stream, kafka, flaky, 0, 0, 100)
        assert proxy.accepted >= 2  # the dropped attempt, then the ones that worked
    assert run.success
    assert _event_types(run).count("STEP_UP_FOR_RETRY") == 1
    assert len(drain(rabbitmq, stream.results_queue)) == 100
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {0: 100}


@pytest.mark.parametrize(
    "case",
    [
        # an earlier range is not committed: retrying in seconds cannot change that
        "predecessor",
        # the broker refuses the credentials: the same on every attempt
        "credentials",
    ],
)
def test_deterministic_failures_are_not_retried(stream, kafka, case):
    produce_orders(kafka, topic=stream.topic, count=200, poison_ratio=0.0)
    if case == "predecessor":
        run = run_range(stream, kafka, rabbitmq_from_env(), 0, 100, 200)
    else:
        run = run_range(stream, kafka, rabbitmq_from_env(password="wrong"), 0, 0, 100)
    assert not run.success
    assert "STEP_UP_FOR_RETRY" not in _event_types(run)
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not retried" in failure.event_specific_data.error.message


def test_transient_classification():
    from confluent_kafka import KafkaError, KafkaException

    from integration_patterns.resources.health import ServiceUnavailableError

    assert is_transient(ServiceUnavailableError("Kafka", "h:1", "timed out"))
    assert is_transient(KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)))
    assert not is_transient(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not is_transient(KeyError("bug"))


def test_a_failed_range_stalls_its_partition_visibly(stream, kafka, unique):
    produce_orders(kafka, topic=stream.topic, count=2000, poison_ratio=0.0)
    instance = dg.DagsterInstance.ephemeral()
    first = sensor_tick(stream, kafka, instance=instance)
    request = first.run_requests[0]
    failed = run_request(stream, kafka, rabbitmq_from_env(password="wrong"), request, instance)
    assert not failed.success

    produce_orders(kafka, topic=stream.topic, count=1000, poison_ratio=0.0)  # more work arrives
    again = sensor_tick(stream, kafka, cursor=first.cursor, instance=instance)
    assert isinstance(again, dg.SkipReason)  # nothing more goes out for a stalled partition
    assert f"{stream.topic}[0] is stalled at range 0-1000" in again.skip_message
    assert failed.run_id in again.skip_message
