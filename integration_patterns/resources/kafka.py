"""Apache Kafka through confluent-kafka: producer, consumer, admin, offsets.

Consumers never auto-commit: the patterns commit an offset only after the work it covers
is durable elsewhere (at-least-once, made effectively-once by keys downstream).

A broker that has just started answers metadata before its group coordinator has loaded
(``NOT_COORDINATOR``, ``COORDINATOR_LOAD_IN_PROGRESS``): such retriable errors are retried
with backoff within ``request_timeout_s`` before the broker is reported unreachable.
"""

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import dagster as dg
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # pyright: ignore[reportPrivateImportUsage]
from pydantic import Field

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.health import Health, ServiceUnavailableError, probe

T = TypeVar("T")

# Coordinator states a just-started (or failing-over) broker passes through; librdkafka
# does not flag all of them retriable on every call.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def is_retriable(exc: BaseException) -> bool:
    """Whether a Kafka error is worth retrying (the broker may answer soon)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if not isinstance(error, KafkaError):
        return False
    return error.retriable() or error.code() in _COORDINATOR_NOT_READY


def _raise_partition_errors(partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Offsets calls report some errors per partition rather than raising: raise them."""
    for tp in partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return partitions


# ListOffsets' special timestamps: the next offset to be written, and the earliest kept.
LATEST, EARLIEST = -1, -2


class OffsetReader:
    """One consumer answering a sensor tick's offset questions, each for all partitions at once.

    A tick that opened a client per partition would cost N connections and N round trips; this
    costs one client and a fixed number of batched requests whatever the partition count.
    """

    def __init__(self, consumer: Consumer, topic: str, timeout_s: float, resource: "KafkaResource"):
        self._consumer = consumer
        self._topic = topic
        self._timeout_s = timeout_s
        self._resource = resource

    def _call(self, fn, *args):
        # Retriable errors (a coordinator still loading) are retried within the timeout.
        return self._resource.retrying(lambda timeout: fn(*args, timeout=timeout))

    def partitions(self) -> list[int]:
        """The topic's partition ids (empty when the topic does not exist)."""
        meta = self._call(self._consumer.list_topics, self._topic)
        topic = meta.topics.get(self._topic)
        return sorted(topic.partitions) if topic is not None and topic.error is None else []

    def committed(self, partitions: list[int]) -> dict[int, int]:
        """The group's committed offset per partition (negative where none is committed)."""
        tps = [TopicPartition(self._topic, p) for p in partitions]
        offsets = self._resource.committed_offsets(self._consumer, tps)
        return {tp.partition: tp.offset for tp in offsets}

    def offsets_at(self, times_ms: dict[int, int]) -> dict[int, int]:
        """Per partition, the first offset stamped at or after the time (-1: none yet).

        ``LATEST`` and ``EARLIEST`` as times give the high and low watermarks.
        """
        tps = [TopicPartition(self._topic, p, t) for p, t in times_ms.items()]
        return {tp.partition: tp.offset for tp in self._call(self._consumer.offsets_for_times, tps)}

    def watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """(low, high) per partition, in two batched requests."""
        low = self.offsets_at(dict.fromkeys(partitions, EARLIEST))
        high = self.offsets_at(dict.fromkeys(partitions, LATEST))
        return {p: (max(low[p], 0), max(high[p], 0)) for p in partitions}


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


# Consumer settings that must stay off: offsets are committed only after the publish is confirmed.
_COMMIT_SETTINGS = ("enable.auto.commit", "enable.auto.offset.store")


class KafkaResource(EnvConfigured, dg.ConfigurableResource):
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

    env_vars: ClassVar[Mapping[str, str]] = {
        "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
        "security_protocol": "KAFKA_SECURITY_PROTOCOL",
        "sasl_mechanism": "KAFKA_SASL_MECHANISM",
        "sasl_username": "KAFKA_SASL_USERNAME",
        "sasl_password": "KAFKA_SASL_PASSWORD",
        "ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    }

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
        """A consumer in ``group_id`` that never commits on its own.

        Offsets are committed only after the results are confirmed (commit-after-confirm), so
        an override that turns automatic commits or offset stores back on is refused: it
        would commit messages that were never processed.

        Raises:
            ValueError: an override enables ``enable.auto.commit`` or
                ``enable.auto.offset.store``.
        """
        for key in _COMMIT_SETTINGS:
            if key in overrides and str(overrides[key]).strip().lower() not in ("false", "0"):
                raise ValueError(
                    f"{key}={overrides[key]!r} would commit offsets before results are "
                    "confirmed; this resource commits explicitly after the publish"
                )
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

    def retrying(self, call: Callable[[float], T]) -> T:
        """Run ``call(timeout_s)``, retrying retriable Kafka errors until ``request_timeout_s``.

        ``call`` gets the time left as its own timeout, so the whole stays within the
        resource's timeout. Backoff doubles from 0.1 s up to 2 s. Any other Kafka error, or a
        retriable one still there at the deadline, raises ``ServiceUnavailableError``.
        """
        deadline = time.monotonic() + self.request_timeout_s
        delay = 0.1
        while True:
            try:
                return call(max(deadline - time.monotonic(), 0.5))
            except KafkaException as exc:
                if not is_retriable(exc) or time.monotonic() + delay >= deadline:
                    raise self._unavailable(exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def ensure_topic(self, topic: str, *, partitions: int = 1) -> None:
        """Create ``topic`` unless it exists (idempotent)."""
        admin = self.admin()
        existing = self.retrying(lambda timeout: admin.list_topics(timeout=timeout)).topics
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
        admin = self.admin()
        meta = self.retrying(lambda timeout: admin.list_topics(topic, timeout=timeout))
        return sorted(meta.topics[topic].partitions) if topic in meta.topics else []

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) offsets of a partition; high is the offset of the next message."""
        consumer = self.consumer(group_id=f"{self.client_id}-watermarks")
        try:
            return self.retrying(
                lambda timeout: consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout
                )
            )
        finally:
            consumer.close()

    def committed(self, *, group_id: str, topic: str, partitions: list[int]) -> dict[int, int]:
        """The group's committed offset per partition (-1001 where none is committed)."""
        consumer = self.consumer(group_id=group_id)
        try:
            offsets = self.committed_offsets(
                consumer, [TopicPartition(topic, p) for p in partitions]
            )
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in offsets}

    def committed_offsets(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        """``consumer.committed`` with retries while the group coordinator is not ready."""
        return self.retrying(
            lambda timeout: _raise_partition_errors(consumer.committed(partitions, timeout=timeout))
        )

    def commit(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit offsets synchronously, retrying while the group coordinator is not ready."""
        self.retrying(
            lambda _timeout: _raise_partition_errors(
                consumer.commit(offsets=partitions, asynchronous=False) or []
            )
        )

    @contextmanager
    def offset_reader(self, *, group_id: str, topic: str) -> Iterator[OffsetReader]:
        """One consumer of ``group_id`` for batched offset queries on ``topic``, then closed."""
        consumer = self.consumer(group_id=group_id)
        try:
            yield OffsetReader(consumer, topic, self.request_timeout_s, self)
        finally:
            consumer.close()

    def health(self) -> Health:
        """Whether a broker answers a metadata request."""

        def check() -> str:
            admin = self.admin()
            meta = self.retrying(lambda timeout: admin.list_topics(timeout=timeout))
            return f"{len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"

        return probe("Kafka", self.bootstrap_servers, check)
