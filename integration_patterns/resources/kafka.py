"""Apache Kafka through confluent-kafka: producer, consumer, admin, offsets.

Consumers never auto-commit: the patterns commit an offset only after the work it covers
is durable elsewhere (at-least-once, made effectively-once by keys downstream).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # pyright: ignore[reportPrivateImportUsage]
from pydantic import Field

from integration_patterns.resources.health import Health, ServiceUnavailableError, probe

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class KafkaResource(dg.ConfigurableResource):
    """Client factory for one Kafka cluster.

    Example:
        ```python
        kafka = KafkaResource(bootstrap_servers="127.0.0.1:9092")
        low, high = kafka.watermarks("orders", 0)
        ```
    """

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    client_id: str = Field(default="integration_patterns", description="Client id on the broker.")
    security_protocol: str = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str = Field(default="PLAIN", description="SASL mechanism when SASL is used.")
    sasl_username: str = Field(default="", description="SASL user; empty for none.")
    sasl_password: str = Field(default="", repr=False, description="SASL password (secret).")
    ssl_ca_location: str = Field(
        default="", description="CA certificate file for SSL/SASL_SSL; empty for the system's."
    )
    request_timeout_s: float = Field(
        default=10.0, description="Seconds to wait for metadata, offsets and admin calls."
    )
    session_timeout_ms: int = Field(default=10_000, description="Consumer group session timeout.")
    max_poll_interval_ms: int = Field(
        default=300_000, description="Must exceed the worst-case time to process one batch."
    )

    def _base_config(self) -> dict[str, Any]:
        if self.security_protocol.upper() not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol must be one of {SECURITY_PROTOCOLS}, "
                f"got {self.security_protocol!r}"
            )
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            "socket.connection.setup.timeout.ms": int(self.request_timeout_s * 1000),
        }
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        if self.sasl_username:
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        return config

    def producer(self, **overrides: Any) -> Producer:
        """An idempotent producer that waits for all in-sync replicas."""
        return Producer(
            self._base_config() | {"acks": "all", "enable.idempotence": True} | overrides
        )

    def consumer(self, *, group_id: str, **overrides: Any) -> Consumer:
        """A consumer in ``group_id`` that never commits on its own."""
        return Consumer(
            self._base_config()
            | {
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.session_timeout_ms,
                "max.poll.interval.ms": self.max_poll_interval_ms,
            }
            | overrides
        )

    def admin(self) -> AdminClient:
        """An admin client for topics and metadata."""
        return AdminClient(self._base_config())

    def _unavailable(self, exc: Exception) -> ServiceUnavailableError:
        return ServiceUnavailableError("Kafka", self.bootstrap_servers, exc)

    def ensure_topic(self, topic: str, *, partitions: int = 1) -> None:
        """Create ``topic`` unless it exists (idempotent)."""
        admin = self.admin()
        try:
            existing = admin.list_topics(timeout=self.request_timeout_s).topics
        except KafkaException as exc:
            raise self._unavailable(exc) from exc
        if topic in existing:
            return
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
        try:
            future.result(timeout=self.request_timeout_s)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise

    def partitions(self, topic: str) -> list[int]:
        """The partition ids of ``topic``."""
        try:
            meta = self.admin().list_topics(topic, timeout=self.request_timeout_s)
        except KafkaException as exc:
            raise self._unavailable(exc) from exc
        return sorted(meta.topics[topic].partitions) if topic in meta.topics else []

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) offsets of a partition; high is the offset of the next message."""
        consumer = self.consumer(group_id=f"{self.client_id}-watermarks")
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.request_timeout_s
            )
        except KafkaException as exc:
            raise self._unavailable(exc) from exc
        finally:
            consumer.close()

    def committed(self, *, group_id: str, topic: str, partitions: list[int]) -> dict[int, int]:
        """The group's committed offset per partition (-1001 where none is committed)."""
        consumer = self.consumer(group_id=group_id)
        try:
            offsets = consumer.committed(
                [TopicPartition(topic, p) for p in partitions], timeout=self.request_timeout_s
            )
        except KafkaException as exc:
            raise self._unavailable(exc) from exc
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in offsets}

    def health(self) -> Health:
        """Whether a broker answers a metadata request."""

        def check() -> str:
            try:
                meta = self.admin().list_topics(timeout=self.request_timeout_s)
            except KafkaException as exc:
                raise self._unavailable(exc) from exc
            return f"{len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"

        return probe("Kafka", self.bootstrap_servers, check)
