"""Re-drive dead letters after a fix: process them again, into results or the parking queue.

Launched from the launchpad with a reason filter, a maximum count and a dry run (the
default, so a first click only reports). Each chosen letter's original bytes go through
today's ``process_order``: a result is published to the results exchange under the letter's
original ``message_id``; a letter that fails again goes to the parking queue with its new
reason, so it can never loop between the queues.

Idempotent by ``message_id``: a re-driven id is recorded in PostgreSQL before its dead
letter is acknowledged, and a letter whose id is already recorded (a duplicate from an
at-least-once re-execution, or a crash between record and ack) is dropped without being
published again. Letters that are not chosen stay in the dead-letter queue in their order:
they are read without acknowledgement and returned when the channel closes.
"""

import json
from collections import Counter
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from integration_patterns.defs.messaging.external import (
    orders_parking_queue,
    orders_results_exchange,
)
from integration_patterns.defs.messaging.processing import process_order
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.postgres import PostgresResource, ensure_ddl
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.rabbitmq_publisher import OutgoingMessage
from integration_patterns.resources.transient import TRANSIENT_RETRY_POLICY, retry_transient

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    message_id  text PRIMARY KEY,
    outcome     text        NOT NULL,
    run_id      text        NOT NULL,
    redriven_at timestamptz NOT NULL DEFAULT now()
)
"""


class RedriveConfig(dg.Config):
    """Which dead letters to send back, and whether to do it or only report."""

    reason_contains: str = Field(
        default="", description="Only letters whose x-error contains this text; empty = all."
    )
    max_messages: int = Field(default=1000, ge=1, description="Most letters to re-drive.")
    scan_limit: int = Field(
        default=10_000, ge=1, description="Most dead letters to look at to find them."
    )
    dry_run: bool = Field(
        default=True, description="Only report what would happen; acknowledge nothing."
    )


@dataclass
class Letter:
    """A dead letter held (unacknowledged) by the re-drive channel."""

    delivery_tag: int
    message_id: str
    headers: dict
    body: bytes


def _decode(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


@dg.op(
    pool="rabbitmq",
    tags={"kind": "rabbitmq"},
    retry_policy=TRANSIENT_RETRY_POLICY,
    out=dg.Out(dict, description="What was (or would be) re-driven, parked and skipped."),
)
@retry_transient
def redrive_dead_letters(
    context: dg.OpExecutionContext,
    config: RedriveConfig,
    rabbitmq: RabbitMQResource,
    postgres: PostgresResource,
    orders_stream: OrdersStreamResource,
) -> dg.Output[dict]:
    """Process chosen dead letters again; results out, repeat failures parked."""
    from psycopg import sql

    stream = orders_stream
    log_table = sql.Identifier(stream.redrive_table)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    with rabbitmq.connection() as conn:
        publisher = conn.channel()
        publisher.confirm_delivery()
        stream.declare_topology(rabbitmq, publisher)
        reader = conn.channel()
        reader.basic_qos(prefetch_count=0)
        chosen: list[Letter] = []
        for _ in range(config.scan_limit):
            method, props, body = reader.basic_get(stream.dead_letter_queue, auto_ack=False)
            if method is None or props is None:
                break
            counts["scanned"] += 1
            headers = dict(props.headers or {})
            if config.reason_contains not in _decode(headers.get("x-error")):
                continue  # not chosen: returned to the queue when the channel closes
            chosen.append(Letter(method.delivery_tag, props.message_id or "", headers, body or b""))
            if len(chosen) >= config.max_messages:
                break

        with postgres.get_connection() as db:
            ensure_ddl(
                db, f"redrive:{stream.redrive_table}", [sql.SQL(_DDL).format(table=log_table)]
            )
            done = {
                row[0]
                for row in db.execute(
                    sql.SQL("SELECT message_id FROM {} WHERE message_id = ANY(%s)").format(
                        log_table
                    ),
                    ([letter.message_id for letter in chosen],),
                ).fetchall()
            }

        for letter in chosen:
            if letter.message_id in done:
                counts["duplicates"] += 1
                if not config.dry_run:
                    reader.basic_ack(letter.delivery_tag)
                continue
            done.add(letter.message_id)
            outcome = process_order(letter.body)
            if outcome.result is not None:
                counts["results"] += 1
                offset = letter.headers.get("x-source-offset")
                target = OutgoingMessage(
                    exchange=stream.results_exchange,
                    routing_key=stream.results_routing_key,
                    body=json.dumps(outcome.result | {"offset": offset}).encode(),
                    message_id=letter.message_id,
                )
            else:
                counts["parked"] += 1
                reasons[outcome.error.split(":")[0]] += 1
                target = OutgoingMessage(
                    exchange="",
                    routing_key=stream.parking_queue,
                    body=letter.body,
                    message_id=letter.message_id,
                    headers={
                        **letter.headers,
                        "x-redrive-error": outcome.error,
                        "x-redrive-error-type": outcome.error_type,
                        "x-redrive-run-id": context.run_id,
                    },
                )
            if config.dry_run:
                continue
            # publish (confirmed) -> record the id -> acknowledge the dead letter
            rabbitmq.publish(
                publisher,
                exchange=target.exchange,
                routing_key=target.routing_key,
                body=target.body,
                message_id=target.message_id,
                headers=target.headers,
            )
            with postgres.get_connection() as db:
                db.execute(
                    sql.SQL(
                        "INSERT INTO {} (message_id, outcome, run_id) VALUES (%s, %s, %s) "
                        "ON CONFLICT (message_id) DO NOTHING"
                    ).format(log_table),
                    (letter.message_id, "result" if outcome.result else "parked", context.run_id),
                )
            reader.basic_ack(letter.delivery_tag)
        reader.close()  # everything not acknowledged goes back to the dead-letter queue

    summary = {
        "dry_run": config.dry_run,
        "scanned": counts["scanned"],
        "chosen": len(chosen),
        "results": counts["results"],
        "parked": counts["parked"],
        "duplicates": counts["duplicates"],
    }
    verb = "would re-drive" if config.dry_run else "re-drove"
    context.log.info(
        f"{verb} {len(chosen)} of {counts['scanned']} dead letters scanned: "
        f"{counts['results']} to results, {counts['parked']} to {stream.parking_queue}, "
        f"{counts['duplicates']} duplicates dropped"
    )
    if not config.dry_run:  # what the re-drive wrote, on the stream's assets
        for spec, target, count in (
            (orders_results_exchange, stream.results_exchange, counts["results"]),
            (orders_parking_queue, stream.parking_queue, counts["parked"]),
        ):
            if count:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=spec.key,
                        metadata={"target": target, "messages": count, "redriven": True},
                    )
                )
    return dg.Output(
        summary, metadata={**summary, "parked_reasons": dg.MetadataValue.json(dict(reasons))}
    )


@dg.job(
    description="Re-drive orders dead letters after a fix (reason filter, maximum count, "
    "dry run by default): results go out, letters that fail again are parked.",
    tags={"pattern": "messaging"},
)
def orders_dead_letter_redrive() -> None:
    """A single-op job launched from the launchpad."""
    redrive_dead_letters()
