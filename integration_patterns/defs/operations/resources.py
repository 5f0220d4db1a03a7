"""Wires the alert sinks from the environment and the monitors' thresholds.

The Slack URL and the signing secret are secrets: they arrive only as ``dg.EnvVar`` here.
Empty values switch a sink off (alerts are then only logged by the sensors).
"""

import dagster as dg

from integration_patterns.defs.operations.monitors import Thresholds
from integration_patterns.defs.operations.sinks import AlertSinks


@dg.definitions
def operations_resources() -> dg.Definitions:
    """``alert_sinks`` and ``alert_thresholds``."""
    return dg.Definitions(
        resources={
            "alert_sinks": AlertSinks(
                slack_webhook_url=dg.EnvVar("ALERT_SLACK_WEBHOOK_URL"),
                webhook_url=dg.EnvVar("ALERT_WEBHOOK_URL"),
                webhook_secret=dg.EnvVar("ALERT_WEBHOOK_SECRET"),
                repeat_after_s=dg.EnvVar.int("ALERT_REPEAT_AFTER_SECONDS"),
            ),
            "alert_thresholds": Thresholds(),
        }
    )
