"""Apache Kafka (KRaft, one combined broker + controller) from Maven Central jars."""

import base64
import os
import uuid

from devstack.harness import port_open, wait_until
from devstack.services.common import (
    DEVSTACK,
    HOME,
    HOST,
    Service,
    log,
    maven_libs,
    run,
    start_service,
    stop_service,
)

KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
KAFKA_LOG = HOME / "kafka" / "kafka.log"
# A fixed cluster id lets --ignore-formatted reuse the data dir across restarts.
KAFKA_CLUSTER_ID = (
    base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_DNS, "integration-patterns.kafka").bytes)
    .decode()
    .rstrip("=")
)


def _kafka_started() -> bool:
    """The broker logs this line once it serves clients (the port opens a little earlier)."""
    return port_open(KAFKA_PORT) and "Kafka Server started" in (
        KAFKA_LOG.read_text(errors="replace") if KAFKA_LOG.exists() else ""
    )


def _kafka_group_ready() -> bool:
    """A consumer-group round trip: the group coordinator answers an offset fetch.

    A fresh broker serves metadata seconds before its coordinator has loaded the offsets
    topic; until then group calls fail with NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.
    confluent-kafka is imported here, not at the top, so the manager stays stdlib-only
    (``make services`` runs it inside the project environment).
    """
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
    except ImportError:  # before `uv sync`: the port and start-up line must do
        return _kafka_started()
    if not port_open(KAFKA_PORT):
        return False
    consumer = Consumer(
        {"bootstrap.servers": f"{HOST}:{KAFKA_PORT}", "group.id": "devstack-readiness"}
    )
    try:
        consumer.committed([TopicPartition("devstack-readiness", 0)], timeout=5)
        return True
    except KafkaException:
        return False
    finally:
        consumer.close()


def _server_properties() -> str:
    data = HOME / "kafka" / "data"
    data.mkdir(parents=True, exist_ok=True)
    return (
        "process.roles=broker,controller\nnode.id=1\n"
        f"controller.quorum.bootstrap.servers={HOST}:{KAFKA_CONTROLLER_PORT}\n"
        f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}\n"
        f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},"
        f"CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}\n"
        "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
        f"log.dirs={data}\nnum.partitions=1\n"
        "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\n"
        "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
        "share.coordinator.state.topic.replication.factor=1\n"
        "share.coordinator.state.topic.min.isr=1\n"
        "group.initial.rebalance.delay.ms=0\n"
    )


def kafka_up() -> None:
    """Format (once) and start a combined broker+controller with a dynamic quorum.

    Ready means a consumer group can fetch offsets, not merely that the port is open.
    """
    if port_open(KAFKA_PORT):
        wait_until("kafka", _kafka_group_ready, timeout=120, log=KAFKA_LOG)
        return
    libs = maven_libs("kafka")
    props = HOME / "kafka" / "server.properties"
    props.write_text(_server_properties())
    logcfg = f"-Dlog4j2.configurationFile={DEVSTACK / 'kafka' / 'log4j2.properties'}"
    classpath = f"{libs}/*"
    storage_tool = ["java", "-Xmx256m", logcfg, "-cp", classpath, "kafka.tools.StorageTool"]
    run(
        [
            *storage_tool,
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            KAFKA_CLUSTER_ID,
            "-c",
            str(props),
        ]
    )
    KAFKA_LOG.unlink(missing_ok=True)
    log("starting Kafka")
    start_service(
        "kafka",
        [
            "java",
            "-Xms512m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            logcfg,
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        KAFKA_LOG,
        _kafka_group_ready,
        120,
    )


def kafka_down() -> None:
    """SIGTERM triggers the broker's controlled shutdown."""
    stop_service("kafka")


SERVICE = Service("kafka", KAFKA_PORT, kafka_up, lambda: port_open(KAFKA_PORT), kafka_down)
