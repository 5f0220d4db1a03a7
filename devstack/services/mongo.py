"""The MongoDB-wire server: mongo-java-server with its H2 file backend, from Maven jars."""

import os

from devstack.harness import port_open
from devstack.services.common import (
    DEVSTACK,
    HOME,
    HOST,
    Service,
    log,
    maven_libs,
    start_service,
    stop_service,
)

MONGO_PORT = int(os.environ.get("MONGO_PORT", "27017"))
MONGO_LOG = HOME / "mongo" / "mongo.log"


def mongo_up() -> None:
    """Start mongo-java-server with its H2 file backend via Java's single-file launcher."""
    if port_open(MONGO_PORT):
        return
    libs = maven_libs("mongo")
    (HOME / "mongo").mkdir(parents=True, exist_ok=True)
    log("starting the MongoDB-wire server")
    start_service(
        "mongo",
        [
            "java",
            # Aggregations are in-memory full scans: 1M events need well over 512 MiB.
            "-Xmx3g",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            f"{libs}/*",
            str(DEVSTACK / "mongo" / "MongoServerMain.java"),
            HOST,
            str(MONGO_PORT),
            str(HOME / "mongo" / "db.mv"),
        ],
        MONGO_LOG,
        lambda: port_open(MONGO_PORT),
        90,
    )


def mongo_down() -> None:
    """SIGTERM runs the server's shutdown hook, which closes the H2 file."""
    stop_service("mongo")


SERVICE = Service("mongodb", MONGO_PORT, mongo_up, lambda: port_open(MONGO_PORT), mongo_down)
