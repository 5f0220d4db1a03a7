"""Alerts reach real HTTP sinks, signed, once, and without secrets; monitors fire on real state.

A local HTTP server stands in for Slack and for a generic webhook receiver; the webhook's
signature is checked with the Standard Webhooks reference library (``standardwebhooks``),
not with our own code. Deduplication lives in a private PostgreSQL schema per test. The
monitors run against the real brokers, a private inbox schema and an ephemeral Dagster
instance holding real failed runs.
"""

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from psycopg import sql
from standardwebhooks import Webhook

from devstack.harness import serving
from devstack.orders_load import produce_orders
from integration_patterns.defs.operations import monitors
from integration_patterns.defs.operations.alert import Alert
from integration_patterns.defs.operations.sensors import alert_on_run_failure, operations_monitors
from integration_patterns.defs.operations.sinks import AlertSinks
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.inbox import ensure_inbox
from integration_patterns_tests import test_messaging
from integration_patterns_tests.conftest import rabbitmq_from_env
from integration_patterns_tests.test_messaging import run_request, sensor_tick

stream = test_messaging.stream  # the orders stream fixture with its own topic and queues

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class Recorder(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.arrived = threading.Event()

        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                recorder.requests.append((self.path, dict(self.headers.items()), body))
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                recorder.arrived.set()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def webhook_payloads(self) -> list[dict]:
        """Every /hook body, verified with the reference library (raises if forged)."""
        verifier = Webhook(SECRET)
        out = []
        for path, headers, body in self.requests:
            if path == "/hook":
                lowered = {k.lower(): v for k, v in headers.items()}
                out.append(verifier.verify(body, lowered))
        return out

    def slack_texts(self) -> list[str]:
        return [json.loads(b)["text"] for p, _, b in self.requests if p == "/slack"]


@pytest.fixture
def recorder():
    with serving(Recorder()) as server:
        yield server


@pytest.fixture
def sinks(recorder, unique, postgres):
    """Both sinks pointed at the recorder; the alert log in a private schema."""
    resource = AlertSinks(
        slack_webhook_url=f"{recorder.url}/slack",
        webhook_url=f"{recorder.url}/hook",
        webhook_secret=SECRET,
        log_schema=f"alerts_{unique}",
    )
    yield resource
    with postgres.get_connection() as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"alerts_{unique}"))
        )


def test_alerts_reach_both_sinks_signed_and_only_once(sinks, recorder, postgres):
    alert = Alert(key="dead-letters:q", title="Dead letters piling up", text="1500 messages")
    report = sinks.notify(postgres, [alert])
    assert report.sent == ["dead-letters:q"] and not report.failed
    [payload] = recorder.webhook_payloads()  # signature verified by standardwebhooks
    assert payload["key"] == "dead-letters:q" and payload["type"] == "alert.firing"
    assert "Dead letters piling up" in recorder.slack_texts()[0]

    # the same condition again, with a moving number: deduplicated
    again = sinks.notify(postgres, [Alert(key="dead-letters:q", title=alert.title, text="1700")])
    assert again.suppressed == ["dead-letters:q"] and len(recorder.requests) == 2
    # a change of severity is news
    worse = Alert(key="dead-letters:q", title=alert.title, severity="critical")
    assert sinks.notify(postgres, [worse]).sent == ["dead-letters:q"]
    # once it stops firing, one "resolved"
    resolved = sinks.notify(postgres, [], resolve_prefix="dead-letters:")
    assert resolved.sent == ["dead-letters:q"]
    assert recorder.webhook_payloads()[-1]["type"] == "alert.resolved"
    assert sinks.notify(postgres, [], resolve_prefix="dead-letters:").sent == []


def test_a_forged_signature_is_rejected_by_the_reference_library(sinks, recorder, postgres):
    sinks.notify(postgres, [Alert(key="k", title="t")])
    _path, headers, body = next(r for r in recorder.requests if r[0] == "/hook")
    lowered = {k.lower(): v for k, v in headers.items()}
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(SECRET).verify(body.replace(b'"t"', b'"x"'), lowered)


def test_an_alert_no_sink_took_is_sent_on_the_next_tick(sinks, recorder, postgres):
    recorder.statuses = [500, 503]  # both sinks fail the first time
    alert = Alert(key="postgres-down", title="PostgreSQL is not answering", severity="critical")
    assert sinks.notify(postgres, [alert]).failed == ["postgres-down"]
    assert sinks.notify(postgres, [alert]).sent == ["postgres-down"]


def test_no_secret_leaves_in_an_alert(sinks, recorder, postgres, monkeypatch):
    monkeypatch.setenv("PARTNER_API_CLIENT_SECRET", "partner-s3cret-value")
    leaky = Alert(
        key="run-failure:x",
        title="Run failed",
        text="connect to postgresql://integration:hunter22@db:5432/x failed; password=hunter22 "
        f"token: abc.def.ghi; Authorization: Bearer eyJhbGciOi.x.y; {SECRET}; "
        "client secret was partner-s3cret-value",
    )
    sinks.notify(postgres, [leaky])
    sent = b" ".join(body for _, _, body in recorder.requests).decode()
    for secret in ("hunter22", "abc.def.ghi", "eyJhbGciOi", SECRET, "partner-s3cret-value"):
        assert secret not in sent
    assert "postgresql://***:***@db:5432/x" in sent


def monitor_context(instance, sinks, kafka, rabbitmq, postgres, stream, schema, **limits):
    return dg.build_sensor_context(
        instance=instance,
        resources={
            "alert_sinks": sinks,
            "alert_thresholds": monitors.Thresholds(**limits),
            "postgres": postgres,
            "kafka": kafka,
            "rabbitmq": rabbitmq,
            "orders_stream": stream,
            "webhook_store": WebhookStore(schema_name=schema),
        },
    )


def test_a_stalled_partition_alerts(stream, kafka, rabbitmq, postgres, sinks, recorder, unique):
    produce_orders(kafka, topic=stream.topic, count=2000, poison_ratio=0.0)
    instance = dg.DagsterInstance.ephemeral()
    request = sensor_tick(stream, kafka, instance=instance).run_requests[0]
    failed = run_request(stream, kafka, rabbitmq_from_env(password="wrong"), request, instance)
    assert not failed.success
    failed_at = time.monotonic()

    # the run-failure sensor: one alert for the range, whichever run of it fails
    run = instance.get_run_by_id(failed.run_id)
    with dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failed.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
        resources={"alert_sinks": sinks, "postgres": postgres},
    ) as status_context:
        alert_on_run_failure(status_context.for_run_failure())
    [run_alert] = recorder.webhook_payloads()
    assert run_alert["key"] == f"run-failure:kafka_orders_batch:{stream.topic}:0:0-1000"

    # the monitors: the stall, naming the range and the failed run
    with monitor_context(instance, sinks, kafka, rabbitmq, postgres, stream, "public") as context:
        skip = operations_monitors(context)
        seconds_to_alert = time.monotonic() - failed_at
        before = len(recorder.webhook_payloads())
        operations_monitors(context)  # the next tick: still stalled, nothing sent again
        again = recorder.webhook_payloads()[before:]
    stall = next(p for p in recorder.webhook_payloads() if "kafka-stall" in p["key"])
    assert stall["severity"] == "critical"
    assert "range 0-1000" in stall["text"] and failed.run_id in stall["text"]
    assert "stalled" in skip.skip_message
    assert seconds_to_alert < 30
    assert not [p for p in again if "kafka-stall" in p["key"]]
    sys.stderr.write(f"stall alert received {seconds_to_alert:.2f}s after the run failed\n")


def test_dead_letter_depth_alerts(stream, kafka, rabbitmq, postgres, sinks, recorder):
    with rabbitmq.channel() as channel:
        stream.declare_topology(rabbitmq, channel)
        for i in range(3):
            rabbitmq.publish(
                channel,
                exchange=stream.dead_letter_exchange,
                routing_key=stream.dead_letter_routing_key,
                body=b"{}",
                message_id=str(i),
            )
    reading = monitors.dead_letter_depth(rabbitmq, stream, monitors.Thresholds(dead_letters_max=2))
    assert [a.key for a in reading.alerts] == [f"dead-letters:{stream.dead_letter_queue}"]
    quiet = monitors.dead_letter_depth(rabbitmq, stream, monitors.Thresholds(dead_letters_max=3))
    assert quiet.alerts == [] and "3 in" in quiet.summary


def test_inbox_monitor_reads_unknown_until_the_inbox_exists(postgres, unique):
    schema = f"inbox_{unique}"
    limits = monitors.Thresholds(inbox_backlog_max=1, inbox_failed_max=0)
    try:
        assert "unknown" in monitors.webhook_inbox(postgres, schema, limits).summary
        with postgres.get_connection() as conn:
            ensure_inbox(conn, schema)
        empty = monitors.webhook_inbox(postgres, schema, limits)
        assert empty.alerts == [] and "0 pending" in empty.summary
        inbox = sql.Identifier(schema, "webhook_inbox")
        with postgres.get_connection() as conn:
            for i, status in enumerate(["pending", "pending", "failed", "processed"]):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (source, delivery_id, payload, status) "
                        "VALUES ('shop', %s, '{{}}', %s)"
                    ).format(inbox),
                    (f"d{i}", status),
                )
        reading = monitors.webhook_inbox(postgres, schema, limits)
        assert sorted(a.key for a in reading.alerts) == [
            f"inbox-backlog:{schema}",
            f"inbox-failed:{schema}",
        ]
        assert "2 pending" in reading.summary and "1 failed" in reading.summary
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_an_open_partner_circuit_alerts():
    instance = dg.DagsterInstance.ephemeral()
    limits = monitors.Thresholds()
    assert "unknown" in monitors.partner_circuit(instance, limits).summary
    for state in ("closed", "open"):
        instance.report_runless_asset_event(
            dg.AssetObservation(monitors.PARTNER_ASSET, metadata={"circuit_state": state})
        )
    [alert] = monitors.partner_circuit(instance, limits).alerts
    assert alert.key == "partner-circuit-open" and alert.severity == "critical"


def test_postgres_monitor_alerts_when_the_server_does_not_answer(free_port):
    from integration_patterns_tests.conftest import postgres_from_env

    dead = postgres_from_env(port=free_port, connect_timeout=1, acquire_timeout=1)
    reading = monitors.postgres_health(dead, monitors.Thresholds())
    assert [a.key for a in reading.alerts] == ["postgres-down"]
    dead.close()


def test_without_a_sink_alerts_are_logged_and_not_claimed(sinks, recorder, postgres):
    off = AlertSinks(log_schema=sinks.log_schema)
    alert = Alert(key="k", title="t")
    assert off.notify(postgres, [alert]).logged_only == ["k"]
    # switched on later: the still-firing alert goes out at once
    assert sinks.notify(postgres, [alert]).sent == ["k"]
