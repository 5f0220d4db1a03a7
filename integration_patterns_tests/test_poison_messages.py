"""Any bytes, any JSON: a message ends in results or the dead-letter exchange, never a failed run.

One message that made the processor raise, or whose reason made a dead-letter header too
big for the broker's frame, used to fail its range on every re-execution and stall the
partition for good. The property tests feed the processor arbitrary bytes and JSON (huge
and non-finite numbers, deep nesting, long strings) and check it never raises and always
returns a bounded result or failure whose headers fit a frame with room to spare. The
end-to-end test sends such messages through the real brokers with confluent-kafka's own
producer (not the project's resource) and checks every offset lands in one queue.
"""

import json
import time

import pika.data
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_patterns.defs.messaging.processing import MAX_REASON_CHARS, process_order
from integration_patterns_tests import test_messaging
from integration_patterns_tests.test_messaging import drain, run_range

stream = test_messaging.stream  # the orders stream fixture with its own topic and queues

# RabbitMQ's smallest negotiable frame is 4096 bytes (default 131072); the headers of a
# dead letter must fit the smallest with room to spare.
HEADER_BUDGET_BYTES = 2048

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=2000),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)

order_like = st.fixed_dictionaries(
    {
        "type": st.just("order.created") | json_values,
        "order_id": json_values,
        "customer_id": json_values,
        "currency": json_values,
        "items": st.lists(
            st.fixed_dictionaries({"quantity": json_values, "unit_price": json_values})
            | json_values,
            max_size=4,
        )
        | json_values,
    }
)


def dead_letter_headers(error: str, error_type: str) -> dict:
    """The headers the batch job puts on a dead letter, with the longest legal topic name."""
    return {
        "x-source-topic": "t" * 249,
        "x-source-partition": 2**31 - 1,
        "x-source-offset": 2**63 - 1,
        "x-run-id": "0" * 36,
        "x-error": error,
        "x-error-type": error_type,
    }


def assert_bounded(payload: bytes) -> None:
    outcome = process_order(payload)  # must not raise, whatever the payload
    if outcome.result is not None:
        assert outcome.error == ""
        body = json.dumps(outcome.result, allow_nan=False)  # valid JSON downstream
        assert len(body) < 2048
        return
    assert outcome.error and outcome.error_type
    assert len(outcome.error) <= MAX_REASON_CHARS
    pieces: list[bytes] = []
    size = pika.data.encode_table(pieces, dead_letter_headers(outcome.error, outcome.error_type))
    assert size <= HEADER_BUDGET_BYTES


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(payload):
    assert_bounded(payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(value):
    assert_bounded(json.dumps(value).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order_like)
def test_order_shaped_json_never_raises(order):
    assert_bounded(json.dumps(order).encode())


def _order(**overrides) -> dict:
    return {
        "type": "order.created",
        "order_id": "o-1",
        "customer_id": 7,
        "currency": "EUR",
        "items": [{"quantity": 1, "unit_price": "2.50"}],
    } | overrides


EXTREMES = [
    # nesting far past Python's recursion limit
    b"[" * 200_000 + b"]" * 200_000,
    json.dumps(_order(order_id=[[[[["deep"]]]]])).encode(),
    # a number with more digits than Python will parse into an int
    b'{"type": "order.created", "n": ' + b"9" * 5000 + b"}",
    json.dumps(_order(items=[{"quantity": 10**30, "unit_price": "1"}])).encode(),
    json.dumps(_order(items=[{"quantity": 1, "unit_price": "9" * 5000}])).encode(),
    json.dumps(_order(items=[{"quantity": 1, "unit_price": "1e999999999"}])).encode(),
    b'{"type": "order.created", "order_id": "o", "customer_id": NaN, "currency": "EUR",'
    b' "items": [{"quantity": 1, "unit_price": Infinity}]}',
    json.dumps(_order(customer_id=float("nan"))).encode(),
    # very long strings everywhere a value is quoted in a reason
    json.dumps(_order(type="x" * 1_000_000)).encode(),
    json.dumps(_order(order_id="x" * 1_000_000)).encode(),
    json.dumps(_order(items=[{"quantity": "x" * 1_000_000, "unit_price": 1}])).encode(),
    b"\xff\xfe" + b"\x00" * 1000,
]


@pytest.mark.parametrize("payload", EXTREMES, ids=range(len(EXTREMES)))
def test_extreme_payloads_fail_with_a_bounded_reason(payload):
    assert process_order(payload).result is None
    assert_bounded(payload)


def test_the_original_exception_type_is_kept():
    assert process_order(b"{not json").error_type == "JSONDecodeError"
    assert process_order(b"[" * 200_000).error_type == "RecursionError"
    assert process_order(b'{"type": "order.shipped"}').error_type == "InvalidOrderError"


def test_independent_producer_poison_ends_in_results_or_dlx(stream, kafka, rabbitmq):
    """confluent-kafka used raw: whatever it sends, every offset lands in exactly one queue."""
    kafka.ensure_topic(stream.topic)
    valid = json.dumps(_order()).encode()
    payloads = [valid, *EXTREMES, None, valid]
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "message.max.bytes": 4_000_000}
    )
    for payload in payloads:
        producer.produce(stream.topic, value=payload, partition=0)
    assert producer.flush(30) == 0
    started = time.monotonic()
    run = run_range(stream, kafka, rabbitmq, 0, 0, len(payloads))
    seconds = time.monotonic() - started
    assert run.success
    results = drain(rabbitmq, stream.results_queue)
    dead = drain(rabbitmq, stream.dead_letter_queue)
    assert len(results) == 2 and len(dead) == len(payloads) - 2
    offsets = sorted(int(m[0].rsplit("-", 1)[1]) for m in results + dead)
    assert offsets == list(range(len(payloads)))
    for _message_id, headers, _body in dead:
        assert headers["x-error-type"] and len(headers["x-error"]) <= MAX_REASON_CHARS
    assert kafka.committed(group_id=stream.group_id, topic=stream.topic, partitions=[0]) == {
        0: len(payloads)
    }
    assert seconds < 60
