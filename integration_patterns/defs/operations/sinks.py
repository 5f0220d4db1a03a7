"""Where alerts go: a Slack incoming webhook and a generic Standard Webhooks endpoint.

Both are optional (empty = off) and configured only through the environment; the Slack
URL and the signing secret are secrets and never logged. The generic webhook is signed
as Standard Webhooks v1 (``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` =
``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}`` with the ``whsec_`` secret),
so any receiver can verify it with the reference libraries. The ``webhook-id`` is the
same for every sink of one notification, which lets a receiver drop duplicates.

``notify`` deduplicates through the alert log (see ``alert_log.py``) and never raises for
a sink that is down: the alert is released and goes out on the next tick.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from integration_patterns.defs.operations.alert import Alert, redact
from integration_patterns.defs.operations.alert_log import AlertLog
from integration_patterns.resources.postgres import PostgresResource

if TYPE_CHECKING:  # httpx is imported when an alert is sent, not by loading the location
    import httpx


def standard_webhook_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict:
    """The three Standard Webhooks headers for ``body`` signed with a ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


def slack_message(payload: dict) -> dict:
    """A Slack incoming-webhook message: a one-line summary and the details."""
    icon = {"critical": ":red_circle:", "resolved": ":white_check_mark:"}.get(
        payload["severity"], ":warning:"
    )
    text = f"{icon} *{payload['title']}*"
    if payload["text"]:
        text += f"\n{payload['text']}"
    return {"text": text}


@dataclass
class NotifyReport:
    """What one ``notify`` call did, for logs and tests."""

    sent: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    logged_only: list[str] = field(default_factory=list)  # no sink is configured


class AlertSinks(dg.ConfigurableResource):
    """The configured alert sinks, with deduplication in PostgreSQL.

    Example:
        ```python
        sinks = AlertSinks(webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL"),
                           webhook_secret=dg.EnvVar("ALERT_WEBHOOK_SECRET"))
        sinks.notify(postgres, [Alert(key="dlq:orders", title="Dead letters piling up")])
        ```
    """

    slack_webhook_url: str = Field(
        default="", repr=False, description="Slack incoming-webhook URL (secret); empty = off."
    )
    webhook_url: str = Field(default="", description="Generic HTTP webhook URL; empty = off.")
    webhook_secret: str = Field(
        default="", repr=False, description="Standard Webhooks signing secret (whsec_...)."
    )
    timeout_s: float = Field(default=10.0, description="Per-request timeout of a sink.")
    repeat_after_s: int = Field(
        default=3600, description="Seconds after which a still-firing alert is sent again."
    )
    log_schema: str = Field(default="public", description="Schema of the alert log table.")
    log_table: str = Field(default="ops_alert_log", description="The alert log table.")

    @property
    def configured(self) -> list[str]:
        """Names of the sinks that are switched on."""
        return [
            n
            for n, url in (("slack", self.slack_webhook_url), ("webhook", self.webhook_url))
            if url
        ]

    def _deliver(self, client: "httpx.Client", alert: Alert) -> list[str]:
        """Send to every sink; return the errors (an empty list means delivered everywhere)."""
        import httpx

        payload = alert.payload()
        errors = []
        body = json.dumps(payload, separators=(",", ":")).encode()
        targets = []
        if self.slack_webhook_url:
            targets.append(
                ("slack", self.slack_webhook_url, json.dumps(slack_message(payload)).encode(), {})
            )
        if self.webhook_url:
            signing = (
                standard_webhook_headers(
                    self.webhook_secret, f"msg_{uuid.uuid4().hex}", int(time.time()), body
                )
                if self.webhook_secret
                else {}
            )
            targets.append(("webhook", self.webhook_url, body, signing))
        for name, url, content, headers in targets:
            try:
                response = client.post(
                    url, content=content, headers={"content-type": "application/json", **headers}
                )
                if response.status_code >= 300:
                    errors.append(f"{name}: HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"{name}: {type(exc).__name__}: {redact(str(exc))}")
        return errors

    def notify(
        self,
        postgres: PostgresResource,
        alerts: list[Alert],
        *,
        resolve_prefix: str | None = None,
    ) -> NotifyReport:
        """Send the alerts that are new or changed, and never raise for a sink.

        With ``resolve_prefix``, alerts under that prefix that no longer fire are sent
        once more as "resolved" and forgotten.
        """
        report = NotifyReport()
        if not self.configured:  # claim nothing: once a sink is set, firing alerts go out
            report.logged_only = [a.key for a in alerts]
            return report
        log = AlertLog(self.log_schema, self.log_table)
        with postgres.get_connection() as conn:
            log.ensure(conn)
            due = [a for a in alerts if log.claim(conn, a, self.repeat_after_s)]
            report.suppressed = [a.key for a in alerts if a not in due]
            if resolve_prefix is not None:
                due += log.resolve(conn, resolve_prefix, {a.key for a in alerts})
        return self.send(due, report, log=log, postgres=postgres)

    def send(
        self,
        alerts: list[Alert],
        report: NotifyReport | None = None,
        *,
        log: AlertLog | None = None,
        postgres: PostgresResource | None = None,
    ) -> NotifyReport:
        """Deliver ``alerts`` to every sink without deduplication.

        With ``log``, an alert that reached no sink is released in it for the next tick.
        """
        report = report or NotifyReport()
        if not self.configured:  # nowhere to send: the sensors still log them
            report.logged_only = [a.key for a in alerts]
            return report
        import httpx

        with httpx.Client(timeout=self.timeout_s) as client:
            for alert in alerts:
                errors = self._deliver(client, alert)
                if len(errors) == len(self.configured):  # reached no sink: try next tick
                    report.failed.append(alert.key)
                    if log is not None and postgres is not None and alert.severity != "resolved":
                        with postgres.get_connection() as conn:
                            log.release(conn, alert.key)
                else:
                    report.sent.append(alert.key)
                report.errors += errors
        return report
