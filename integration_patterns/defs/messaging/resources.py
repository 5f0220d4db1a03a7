"""Wires the orders stream's names; the Kafka and RabbitMQ connections are shared."""

import dagster as dg

from integration_patterns.defs.messaging.stream import OrdersStreamResource


@dg.definitions
def resources() -> dg.Definitions:
    """The orders stream, its topic and group from the environment."""
    return dg.Definitions(resources={"orders_stream": OrdersStreamResource.from_env_vars()})
