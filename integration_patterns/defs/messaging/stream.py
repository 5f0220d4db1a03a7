"""Where the orders stream lives and where its outcomes go: one resource, one topology.

Names are configuration (not constants) so that tests, staging and production can run side
by side on one broker, each with its own topic, group, exchanges and queues.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import dagster as dg
from pydantic import Field

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.rabbitmq import RabbitMQResource

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel


class OrdersStreamResource(EnvConfigured, dg.ConfigurableResource):
    """The Kafka source and RabbitMQ destinations of the order-processing pattern."""

    env_vars: ClassVar[Mapping[str, str]] = {"topic": "ORDERS_TOPIC", "group_id": "ORDERS_GROUP_ID"}

    topic: str = Field(default="orders", description="Kafka topic the orders arrive on.")
    group_id: str = Field(
        default="integration-patterns-orders",
        description="Consumer group whose committed offsets mark what is fully processed.",
    )
    batch_size: int = Field(default=10_000, description="Most messages in one run's range.")
    batch_timeout_s: float = Field(
        default=30.0,
        description="A partial batch is dispatched once its oldest message is this old.",
    )
    max_runs_per_tick: int = Field(default=50, description="Cap on run requests per tick.")
    results_exchange: str = Field(default="results", description="Durable topic exchange.")
    results_routing_key: str = Field(default="order.processed", description="Results key.")
    results_queue: str = Field(default="orders.results", description="Queue bound for results.")
    dead_letter_exchange: str = Field(
        default="orders.dlx", description="Durable exchange for failures (dead letters)."
    )
    dead_letter_routing_key: str = Field(default="order.failed", description="Failures key.")
    dead_letter_queue: str = Field(
        default="orders.dead-letter", description="Queue that keeps every failed message."
    )
    parking_queue: str = Field(
        default="orders.parking",
        description="Where re-driven dead letters that fail again are parked for a human.",
    )
    redrive_table: str = Field(
        default="orders_redrive_log",
        description="PostgreSQL table of re-driven message ids (makes re-drive idempotent).",
    )
    publish_window: int = Field(
        default=1000, description="Messages in flight awaiting publisher confirms."
    )
    read_chunk: int = Field(default=1000, description="Messages fetched from Kafka per call.")
    read_idle_timeout_s: float = Field(
        default=30.0, description="Fail a run whose range stops arriving for this long."
    )

    def declare_topology(self, rabbitmq: RabbitMQResource, channel: "BlockingChannel") -> None:
        """Declare exchanges, queues and bindings (idempotent; safe on every run).

        The results queue dead-letters into the same exchange as processing failures, so a
        consumer that rejects a result does not lose it either.
        """
        channel.exchange_declare(self.results_exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        rabbitmq.declare_queue(
            channel,
            self.results_queue,
            arguments={
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": self.dead_letter_routing_key,
            },
        )
        rabbitmq.declare_queue(channel, self.dead_letter_queue)
        rabbitmq.declare_queue(channel, self.parking_queue)
        channel.queue_bind(self.results_queue, self.results_exchange, self.results_routing_key)
        channel.queue_bind(
            self.dead_letter_queue, self.dead_letter_exchange, self.dead_letter_routing_key
        )
