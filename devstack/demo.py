"""``make demo``: run the code location's jobs end to end against the local services.

Runs execute in this process but are recorded in the real Dagster instance (DAGSTER_HOME,
PostgreSQL storage), so they show up in ``make dev``'s UI afterwards.
"""

import os
import sys

import dagster as dg

from devstack import (
    demo_enrichment,
    demo_external_api,
    demo_gateway,
    demo_messaging,
    demo_webhooks,
)
from devstack.webhook_fixtures import running_receiver
from integration_patterns.definitions import defs


def run_platform_smoke(instance: dg.DagsterInstance) -> str:
    """Probe every service through its resource and describe what each answered."""
    result = defs().resolve_job_def("platform_smoke").execute_in_process(instance=instance)
    lines = [f"platform_smoke run {result.run_id}: {'success' if result.success else 'FAILED'}"]
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        for service in ("postgresql", "mongodb", "kafka", "rabbitmq"):
            latency = metadata[f"{service}_latency_ms"].value
            detail = metadata[f"{service}_detail"].value
            lines.append(f"  {service:<11} {latency:>8} ms  {detail}")
    return "\n".join(lines)


def run_webhooks(instance: dg.DagsterInstance) -> str:
    """Send signed events to a receiver started for the demo and route them to runs."""
    with running_receiver({}) as receiver:
        return demo_webhooks.run_demo(instance, receiver.url)


def main() -> int:
    """Run every demo section in order; stop at the first failure."""
    instance = dg.DagsterInstance.get()
    sections = [
        run_platform_smoke,
        demo_enrichment.run_demo,
        lambda inst: demo_external_api.run_demo(inst, os.environ["PARTNER_API_BASE_URL"]),
        demo_messaging.run_demo,
        run_webhooks,
        lambda _instance: demo_gateway.run_with_stack(),
    ]
    for section in sections:
        sys.stdout.write(section(instance) + "\n\n")
    sys.stdout.write("Open the runs in the UI with `make dev` (http://127.0.0.1:3000).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
