"""Re-drive republishes exactly the chosen dead letters, once; repeat failures are parked.

The dead letters here are what an older, buggy processor would have rejected (valid orders
with the reason "bug 42"), beside real poison that still fails. A dry run changes nothing;
a real run sends the chosen letters, up to the maximum, to the results queue under their
original message ids; a duplicate letter and a second run never publish anything twice;
letters that fail again land in the parking queue with their new reason.
"""

import json

import pytest
from psycopg import sql

from integration_patterns.defs.messaging.redrive import orders_dead_letter_redrive
from integration_patterns_tests import test_messaging
from integration_patterns_tests.test_messaging import drain

stream = test_messaging.stream  # the orders stream fixture with its own topic and queues


def order(i: int) -> bytes:
    return json.dumps(
        {
            "type": "order.created",
            "order_id": f"o-{i}",
            "customer_id": i,
            "currency": "EUR",
            "items": [{"quantity": 2, "unit_price": "1.25"}],
        }
    ).encode()


@pytest.fixture
def letters(stream, rabbitmq, postgres):
    """Five fixable letters (one of them twice), three still-poison ones, in that order."""
    fixable = [(f"{stream.topic}-0-{i}", order(i), "invalid item: bug 42") for i in range(5)]
    poison = [(f"{stream.topic}-0-{i}", b"{broken", "unparsable payload") for i in range(5, 8)]
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
        for message_id, body, error in [*fixable, fixable[0], *poison]:
            rabbitmq.publish(
                channel,
                exchange=stream.dead_letter_exchange,
                routing_key=stream.dead_letter_routing_key,
                body=body,
                message_id=message_id,
                headers={"x-error": error, "x-source-offset": int(message_id.rsplit("-", 1)[1])},
            )
    yield fixable, poison
    with postgres.get_connection() as conn:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(stream.redrive_table))
        )


def redrive(stream, rabbitmq, postgres, **config):
    result = orders_dead_letter_redrive.execute_in_process(
        run_config={"ops": {"redrive_dead_letters": {"config": config}}},
        resources={"rabbitmq": rabbitmq, "postgres": postgres, "orders_stream": stream},
    )
    return result.output_for_node("redrive_dead_letters")


def depth(rabbitmq, queue):
    with rabbitmq.channel() as channel:
        return channel.queue_declare(queue, passive=True).method.message_count


def test_redrive_sends_exactly_the_chosen_letters_once(stream, rabbitmq, postgres, letters):
    fixable, poison = letters
    dry = redrive(stream, rabbitmq, postgres, reason_contains="bug 42")
    assert dry["dry_run"] and dry["chosen"] == 6 and dry["results"] == 5
    assert dry["duplicates"] == 1
    assert depth(rabbitmq, stream.dead_letter_queue) == 9  # nothing acknowledged
    assert depth(rabbitmq, stream.results_queue) == 0

    first = redrive(
        stream, rabbitmq, postgres, reason_contains="bug 42", max_messages=3, dry_run=False
    )
    assert first["results"] == 3
    second = redrive(stream, rabbitmq, postgres, reason_contains="bug 42", dry_run=False)
    assert second["results"] == 2 and second["duplicates"] == 1  # fixable[0] came twice
    third = redrive(stream, rabbitmq, postgres, reason_contains="bug 42", dry_run=False)
    assert third["chosen"] == 0

    results = drain(rabbitmq, stream.results_queue)
    assert sorted(m[0] for m in results) == sorted(m for m, _, _ in fixable)  # each once
    assert json.loads(results[0][2])["total"] == "2.50"
    remaining = drain(rabbitmq, stream.dead_letter_queue)
    assert [m[0] for m in remaining] == [m for m, _, _ in poison]  # untouched, in order


def test_letters_that_fail_again_are_parked(stream, rabbitmq, postgres, letters):
    _fixable, poison = letters
    report = redrive(stream, rabbitmq, postgres, reason_contains="unparsable", dry_run=False)
    assert report["parked"] == 3 and report["results"] == 0
    parked = drain(rabbitmq, stream.parking_queue)
    assert [m[0] for m in parked] == [m for m, _, _ in poison]
    for _id, headers, body in parked:
        assert body == b"{broken"
        assert "unparsable payload" in headers["x-redrive-error"]
        assert headers["x-redrive-error-type"] == "JSONDecodeError"
    assert depth(rabbitmq, stream.dead_letter_queue) == 6  # the fixable ones stay


def test_a_redrive_reports_what_it_wrote_on_the_stream_assets(stream, rabbitmq, postgres, letters):
    def run(dry_run):
        config = {"reason_contains": "unparsable", "dry_run": dry_run}
        return orders_dead_letter_redrive.execute_in_process(
            run_config={"ops": {"redrive_dead_letters": {"config": config}}},
            resources={"rabbitmq": rabbitmq, "postgres": postgres, "orders_stream": stream},
        )

    def reported(result):
        return {
            m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
            for m in (e.materialization for e in result.get_asset_materialization_events())
        }

    assert reported(run(dry_run=True)) == {}  # a dry run writes nothing
    assert reported(run(dry_run=False)) == {
        "orders_parking_queue": {"target": stream.parking_queue, "messages": 3, "redriven": True}
    }
