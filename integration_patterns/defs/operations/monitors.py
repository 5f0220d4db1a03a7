"""Monitors: each looks at one thing that can go wrong and returns the alerts it finds.

A monitor returns a ``Reading``: the alerts that fire now and one summary line for the
sensor's log. A monitor whose service does not answer returns that as its alert instead of
raising, so one dead dependency never hides the others. Thresholds are the ``Thresholds``
resource's config.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from integration_patterns.defs.messaging.stalls import find_stall
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.defs.operations.alert import Alert
from integration_patterns.inbox import FAILED, INBOX_TABLE, PENDING, inbox_table
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource

PARTNER_ASSET = dg.AssetKey("partner_records_raw")
CIRCUIT_STATE = "circuit_state"


class Thresholds(dg.ConfigurableResource):
    """When a monitor alerts."""

    kafka_lag_max: int = Field(default=100_000, description="Messages behind per partition.")
    dead_letters_max: int = Field(default=1_000, description="Messages in the dead-letter queue.")
    inbox_backlog_max: int = Field(default=1_000, description="Pending webhook events.")
    inbox_backlog_age_s: float = Field(
        default=600.0, description="Age of the oldest pending webhook event."
    )
    inbox_failed_max: int = Field(default=0, description="Failed webhook events.")
    postgres_connections_ratio: float = Field(
        default=0.8, description="Share of max_connections in use."
    )
    partner_circuit_window_s: float = Field(
        default=7200.0, description="An open circuit recorded longer ago than this is stale."
    )


@dataclass
class Reading:
    """What a monitor found: alerts that fire, and a line for the log."""

    summary: str
    alerts: list[Alert] = field(default_factory=list)


def kafka_lag_and_stalls(
    instance: dg.DagsterInstance,
    kafka: KafkaResource,
    stream: OrdersStreamResource,
    limits: Thresholds,
) -> Reading:
    """Lag per partition of the orders group, and partitions held back by a failed range."""
    topic = stream.topic
    partitions = kafka.partitions(topic)
    if not partitions:
        return Reading(f"kafka: topic {topic!r} does not exist yet")
    committed = kafka.committed(group_id=stream.group_id, topic=topic, partitions=partitions)
    alerts, lags = [], {}
    for partition in partitions:
        low, high = kafka.watermarks(topic, partition)
        position = max(committed.get(partition, -1), low)
        lags[partition] = high - position
        stall = find_stall(instance, topic, partition, position) if high > position else None
        if stall is not None:
            alerts.append(
                Alert(
                    key=f"kafka-stall:{topic}:{partition}",
                    title=f"Kafka partition {topic}[{partition}] is stalled",
                    text=stall.describe() + f"; {lags[partition]} messages waiting",
                    severity="critical",
                    details={"range": stall.range, "run_id": stall.run_id},
                )
            )
        elif lags[partition] > limits.kafka_lag_max:
            alerts.append(
                Alert(
                    key=f"kafka-lag:{topic}:{partition}",
                    title=f"Kafka partition {topic}[{partition}] lags behind",
                    text=f"{lags[partition]} messages not yet committed by group "
                    f"{stream.group_id} (threshold {limits.kafka_lag_max})",
                )
            )
    stalled = [a.details["range"] for a in alerts if a.severity == "critical"]
    summary = f"kafka: lag per partition of {topic}: {lags}"
    if stalled:
        summary += f"; {len(stalled)} partition(s) stalled"
    return Reading(summary, alerts)


def dead_letter_depth(
    rabbitmq: RabbitMQResource, stream: OrdersStreamResource, limits: Thresholds
) -> Reading:
    """Messages waiting in the dead-letter queue (a passive declare: nothing is created)."""
    import pika.exceptions  # here, not at module level: loading the location must not pay for it

    queue = stream.dead_letter_queue
    with rabbitmq.connection() as conn:
        try:
            depth = conn.channel().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return Reading(f"dead letters: queue {queue!r} does not exist yet")
            raise
    alerts = []
    if depth > limits.dead_letters_max:
        alerts.append(
            Alert(
                key=f"dead-letters:{queue}",
                title=f"Dead letters piling up in {queue}",
                text=f"{depth} messages (threshold {limits.dead_letters_max}); inspect them "
                "and re-drive with the orders_dead_letter_redrive job once fixed",
            )
        )
    return Reading(f"dead letters: {depth} in {queue}", alerts)


def webhook_inbox(postgres: PostgresResource, schema: str, limits: Thresholds) -> Reading:
    """Pending backlog (count, oldest) and failed events of the webhook inbox.

    Reads the contract of ``integration_patterns.inbox``; an inbox the receiver has not
    created yet reads as "unknown" rather than failing the monitor.
    """
    from psycopg import sql

    table = inbox_table(schema)
    with postgres.get_connection() as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (table.as_string(None),)).fetchone()
        if exists is None or exists[0] is None:
            return Reading(f"webhook inbox: unknown (no table {schema}.{INBOX_TABLE} yet)")
        pending, oldest, failed = conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE status = %s), "
                "min(received_at) FILTER (WHERE status = %s), "
                "count(*) FILTER (WHERE status = %s) FROM {}"
            ).format(table),
            (PENDING, PENDING, FAILED),
        ).fetchone() or (0, None, 0)  # an aggregate always returns one row
    age_s = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    alerts = []
    if pending > limits.inbox_backlog_max or age_s > limits.inbox_backlog_age_s:
        alerts.append(
            Alert(
                key=f"inbox-backlog:{schema}",
                title="Webhook inbox backlog is growing",
                text=f"{pending} pending events, the oldest waiting {age_s:.0f}s "
                f"(thresholds {limits.inbox_backlog_max} events, "
                f"{limits.inbox_backlog_age_s:.0f}s)",
            )
        )
    if failed > limits.inbox_failed_max:
        alerts.append(
            Alert(
                key=f"inbox-failed:{schema}",
                title="Webhook events failed processing",
                text=f"{failed} events with status 'failed'; read their reason in "
                f"{schema}.webhook_inbox and replay them once fixed",
            )
        )
    return Reading(
        f"webhook inbox: {pending} pending (oldest {age_s:.0f}s), {failed} failed", alerts
    )


def postgres_health(postgres: PostgresResource, limits: Thresholds) -> Reading:
    """The server answers through the pool, and its connections are not nearly used up."""
    health = postgres.health()
    if not health.ok:
        return Reading(
            f"postgres: DOWN ({health.detail})",
            [
                Alert(
                    key="postgres-down",
                    title=f"PostgreSQL at {health.address} is not answering",
                    text=health.detail,
                    severity="critical",
                )
            ],
        )
    with postgres.get_connection() as conn:
        used, limit = conn.execute(
            "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
        ).fetchone() or (0, 1)
    alerts = []
    if used >= limit * limits.postgres_connections_ratio:
        alerts.append(
            Alert(
                key="postgres-connections",
                title="PostgreSQL connections nearly exhausted",
                text=f"{used} of max_connections={limit} in use; pools will start timing out",
            )
        )
    return Reading(f"postgres: ok in {health.latency_ms} ms, {used}/{limit} connections", alerts)


def partner_circuit(instance: dg.DagsterInstance, limits: Thresholds) -> Reading:
    """The partner-API circuit as last recorded by the fetch (an asset observation)."""
    records = instance.fetch_observations(PARTNER_ASSET, limit=1).records
    if not records:
        return Reading("partner API circuit: unknown (no fetch recorded yet)")
    record = records[0]
    observation = record.asset_observation
    value = observation.metadata.get(CIRCUIT_STATE) if observation else None
    state = str(getattr(value, "value", value) or "unknown")
    age_s = time_since(record.timestamp)
    if state != "open" or age_s > limits.partner_circuit_window_s:
        return Reading(f"partner API circuit: {state} ({age_s:.0f}s ago)")
    return Reading(
        f"partner API circuit: OPEN ({age_s:.0f}s ago)",
        [
            Alert(
                key="partner-circuit-open",
                title="Partner API circuit is open",
                text=f"the partner fetch of run {record.run_id} gave up after repeated failures "
                f"{age_s:.0f}s ago; the partner is failing or unreachable",
                severity="critical",
                details={"run_id": record.run_id},
            )
        ],
    )


def time_since(timestamp: float) -> float:
    """Seconds since a Unix timestamp."""
    return datetime.now(UTC).timestamp() - timestamp
