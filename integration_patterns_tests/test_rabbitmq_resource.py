"""RabbitMQResource against the real broker: confirmed durable publishing, consuming, faults."""

import time

import pika
import pytest

from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns_tests.conftest import rabbitmq_from_env


def test_publish_with_confirms_to_a_durable_queue_and_consume(rabbitmq, unique):
    queue = f"roundtrip-{unique}"
    with rabbitmq.channel() as channel:
        assert rabbitmq.declare_queue(channel, queue) == 0
        assert rabbitmq.declare_queue(channel, queue) == 0  # idempotent
        for i in range(5):
            rabbitmq.publish(
                channel,
                exchange="",
                routing_key=queue,
                body=f'{{"n": {i}}}'.encode(),
                message_id=f"m-{i}",
                headers={"origin": "test"},
            )
        declared = channel.queue_declare(queue, passive=True)
        assert declared.method.message_count == 5
        received = []
        for _ in range(5):
            method, props, body = channel.basic_get(queue, auto_ack=False)
            assert method is not None
            received.append((props.message_id, props.delivery_mode, props.headers, body))
            channel.basic_ack(method.delivery_tag)
        channel.queue_delete(queue)
    assert [r[0] for r in received] == [f"m-{i}" for i in range(5)]
    assert all(r[1] == pika.DeliveryMode.Persistent.value for r in received)
    assert received[0][2] == {"origin": "test"}


def test_unroutable_message_is_an_error_not_a_silent_drop(rabbitmq, unique):
    with rabbitmq.channel() as channel:
        with pytest.raises(pika.exceptions.UnroutableError):
            rabbitmq.publish(
                channel,
                exchange="",
                routing_key=f"no-such-queue-{unique}",
                body=b"{}",
                message_id="lost",
            )


def test_closed_port_fails_within_timeout_naming_the_address(free_port):
    resource = rabbitmq_from_env(port=free_port, socket_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=rf"RabbitMQ at 127\.0\.0\.1:{free_port}"):
        with resource.connection():
            pass
    assert time.monotonic() - started < 8
    assert not resource.health().ok
