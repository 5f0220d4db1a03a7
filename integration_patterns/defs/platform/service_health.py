"""One asset that touches every external system through its resource.

It is the demo's first job and the quickest way to see, from the UI, whether the code
location can reach its services: each probe's latency and answer become metadata, and the
asset fails (naming the services that did not answer) when any is down.
"""

from typing import Any

import dagster as dg

from integration_patterns.defs.owners import PLATFORM
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource


class ServicesDownError(RuntimeError):
    """One or more services did not answer their health probe."""


@dg.asset(
    group_name="platform",
    kinds={"postgres", "mongodb", "kafka", "rabbitmq"},
    owners=PLATFORM,
)
def service_health(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    mongo: MongoResource,
    kafka: KafkaResource,
    rabbitmq: RabbitMQResource,
) -> dg.MaterializeResult:
    """Health of every external service the code location depends on."""
    probes = [postgres.health(), mongo.health(), kafka.health(), rabbitmq.health()]
    for probe in probes:
        context.log.info(
            f"{probe.service} {probe.address}: {'ok' if probe.ok else 'DOWN'} "
            f"in {probe.latency_ms} ms ({probe.detail})"
        )
    down = [p for p in probes if not p.ok]
    if down:
        raise ServicesDownError(
            "services down: " + "; ".join(f"{p.service} at {p.address}: {p.detail}" for p in down)
        )
    metadata: dict[str, Any] = {f"{p.service.lower()}_latency_ms": p.latency_ms for p in probes}
    metadata |= {f"{p.service.lower()}_detail": p.detail for p in probes}
    metadata["postgres_pool"] = dg.MetadataValue.json(postgres.stats())
    metadata["mongo_pool"] = dg.MetadataValue.json(mongo.pool_settings())
    return dg.MaterializeResult(metadata=metadata)


platform_smoke_job = dg.define_asset_job(
    "platform_smoke",
    selection=[service_health],
    description="Probe every external service through its resource.",
    # One short step: a step process of its own would load the location a second time.
    executor_def=dg.in_process_executor,
)
