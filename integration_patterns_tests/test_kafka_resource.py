"""KafkaResource against the real broker: produce, consume in a group, commit, watermarks."""

import time

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition

from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns_tests.conftest import kafka_from_env


def _consume(consumer, count: int, timeout: float = 30.0):
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            messages.append(msg)
    return messages


def test_produce_consume_commit_in_a_group(kafka, unique):
    topic, group = f"roundtrip-{unique}", f"group-{unique}"
    kafka.ensure_topic(topic, partitions=1)
    kafka.ensure_topic(topic, partitions=1)  # idempotent
    producer = kafka.producer()
    for i in range(10):
        producer.produce(topic, key=str(i), value=f"message-{i}".encode())
    assert producer.flush(15) == 0
    assert kafka.watermarks(topic, 0) == (0, 10)

    consumer = kafka.consumer(group_id=group, **{"session.timeout.ms": 6000})
    consumer.subscribe([topic])
    try:
        first = _consume(consumer, 6)
        assert [m.value() for m in first[:6]] == [f"message-{i}".encode() for i in range(6)]
        # Commit only what was handled: offset 6 is the next one to read.
        consumer.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
    finally:
        consumer.close()
    assert kafka.committed(group_id=group, topic=topic, partitions=[0]) == {0: 6}

    # A new member of the group resumes at the committed offset, not at the start.
    consumer = kafka.consumer(group_id=group, **{"session.timeout.ms": 6000})
    consumer.subscribe([topic])
    try:
        rest = _consume(consumer, 4)
    finally:
        consumer.close()
    assert [m.offset() for m in rest] == [6, 7, 8, 9]


def test_consuming_without_committing_leaves_no_offset(kafka, unique):
    # Auto commit is off: closing a consumer that read messages must not commit them.
    topic, group = f"nocommit-{unique}", f"group-{unique}"
    kafka.ensure_topic(topic)
    producer = kafka.producer()
    for _ in range(3):
        producer.produce(topic, value=b"x")
    assert producer.flush(15) == 0
    consumer = kafka.consumer(group_id=group, **{"session.timeout.ms": 6000})
    consumer.subscribe([topic])
    try:
        assert len(_consume(consumer, 3)) == 3
    finally:
        consumer.close()
    assert kafka.committed(group_id=group, topic=topic, partitions=[0]) == {0: OFFSET_INVALID}


def test_closed_port_fails_within_timeout_naming_the_address(free_port):
    resource = kafka_from_env(bootstrap_servers=f"127.0.0.1:{free_port}", request_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=rf"Kafka at 127\.0\.0\.1:{free_port}"):
        resource.partitions("anything")
    assert time.monotonic() - started < 8
    assert not resource.health().ok


@pytest.mark.parametrize(
    "override",
    [
        {"enable.auto.commit": True},
        {"enable.auto.commit": "true"},
        {"enable.auto.offset.store": True},
        {"enable.auto.commit": 1},
    ],
)
def test_consumer_overrides_cannot_turn_automatic_commits_on(kafka, override):
    with pytest.raises(ValueError, match="commit"):
        kafka.consumer(group_id="never-created", **override)


def test_consumer_overrides_that_keep_commits_off_are_accepted(kafka):
    consumer = kafka.consumer(group_id="never-created", **{"enable.auto.commit": False})
    consumer.close()
