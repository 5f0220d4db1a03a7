"""The two sensors that alert: one on every failed run, one that runs the monitors.

Both send through ``AlertSinks`` (deduplicated in PostgreSQL) and never launch runs. The
monitors sensor reports "resolved" for a monitor's alerts once they stop firing.
"""

import json

import dagster as dg

from integration_patterns.defs.messaging.stalls import PARTITION_TAG, RANGE_TAG
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.defs.operations import monitors
from integration_patterns.defs.operations.alert import Alert
from integration_patterns.defs.operations.sinks import AlertSinks
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource

MONITOR_PREFIX = "monitor:"


def run_failure_alert(run: dg.DagsterRun, message: str) -> Alert:
    """One alert per failing unit of work: a Kafka range, a run key, else the run itself.

    Re-executions of the same range that fail again share the key, so they do not page
    twice within the repeat window.
    """
    if PARTITION_TAG in run.tags:
        unit = f"{run.tags[PARTITION_TAG]}:{run.tags.get(RANGE_TAG, '')}"
    else:
        unit = run.tags.get("dagster/run_key") or run.run_id
    return Alert(
        key=f"run-failure:{run.job_name}:{unit}",
        title=f"Run of {run.job_name} failed",
        text=f"run {run.run_id}: {message}",
        severity="critical",
        details={"run_id": run.run_id, "job": run.job_name, **dict(run.tags)},
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert to the configured sinks for every failed run.",
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext, alert_sinks: AlertSinks, postgres: PostgresResource
) -> None:
    """Alert with the job, the run id, its tags and the failure message."""
    message = context.failure_event.message or "failed"
    alert = run_failure_alert(context.dagster_run, message)
    try:
        report = alert_sinks.notify(postgres, [alert])
    except Exception as exc:  # the alert log (PostgreSQL) is down: this run alerts once anyway
        context.log.warning(f"alert log unavailable ({type(exc).__name__}); sending undeduplicated")
        report = alert_sinks.send([alert])
    context.log.info(
        f"run failure alert {alert.key}: sent {report.sent}, deduplicated {report.suppressed}, "
        f"logged only {report.logged_only}, failed {report.failed}"
    )


@dg.sensor(
    name="operations_monitors",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Kafka lag and stalls, dead letters, webhook inbox, PostgreSQL, partner "
    "circuit: alerts to the configured sinks.",
)
def operations_monitors(
    context: dg.SensorEvaluationContext,
    alert_sinks: AlertSinks,
    alert_thresholds: monitors.Thresholds,
    postgres: PostgresResource,
    kafka: KafkaResource,
    rabbitmq: RabbitMQResource,
    orders_stream: OrdersStreamResource,
    webhook_store: WebhookStore,
) -> dg.SkipReason:
    """Run every monitor, alert on what fires, resolve what stopped firing."""
    checks = {
        "kafka": lambda: monitors.kafka_lag_and_stalls(
            context.instance, kafka, orders_stream, alert_thresholds
        ),
        "dead-letters": lambda: monitors.dead_letter_depth(
            rabbitmq, orders_stream, alert_thresholds
        ),
        "webhook-inbox": lambda: monitors.webhook_inbox(
            postgres, webhook_store.schema_name, alert_thresholds
        ),
        "postgres": lambda: monitors.postgres_health(postgres, alert_thresholds),
        "partner-circuit": lambda: monitors.partner_circuit(context.instance, alert_thresholds),
    }
    summaries, alerts = [], []
    for name, check in checks.items():
        try:
            reading = check()
        except Exception as exc:  # a monitor that cannot look is itself worth an alert
            reading = monitors.Reading(
                f"{name}: monitor failed ({type(exc).__name__})",
                [
                    Alert(
                        key=f"monitor-failed:{name}",
                        title=f"The {name} monitor cannot check its service",
                        text=f"{type(exc).__name__}: {exc}",
                        severity="critical",
                    )
                ],
            )
        summaries.append(reading.summary)
        alerts += reading.alerts
    alerts = [
        Alert(f"{MONITOR_PREFIX}{a.key}", a.title, a.text, a.severity, a.details) for a in alerts
    ]
    for summary in summaries:
        context.log.info(summary)
    cursor = None
    try:
        report = alert_sinks.notify(postgres, alerts, resolve_prefix=MONITOR_PREFIX)
    except Exception:  # the alert log (PostgreSQL) is down: dedupe in the cursor instead
        already = set(json.loads(context.cursor)) if context.cursor else set()
        report = alert_sinks.send([a for a in alerts if a.fingerprint + a.key not in already])
        cursor = json.dumps(sorted({a.fingerprint + a.key for a in alerts}))
    outcome = f"{len(alerts)} firing; sent {report.sent or 'none'}"
    if report.logged_only:
        outcome += " (no alert sink configured: logged only)"
    if report.failed:
        outcome += f"; delivery failed for {report.failed}: {report.errors}"
    context.log.info(outcome)
    if cursor is not None:
        context.update_cursor(cursor)
    return dg.SkipReason("; ".join([*summaries, outcome]))
