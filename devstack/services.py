"""Local services manager: install, start, check and stop the real services on 127.0.0.1.

Usage: ``python -m devstack.services up|status|down [service ...]``.

Every step is idempotent: what is installed is reused, what already answers is left alone.
PostgreSQL 15 and RabbitMQ come from apt; Kafka (KRaft, one node) and the MongoDB-wire server
(mongo-java-server, H2 file) run from Maven Central jars with Java 17; the S3 gateway
(versitygw) is built once with ``go install`` from the Go module proxy. Downloads and data live
in ``DEVSTACK_HOME`` (default ``<project>/.devstack``, git-ignored). When a service does not
come up, the command fails naming it and showing the tail of its log.

Stdlib only at import, so it runs before the project's Python dependencies are installed
(creating the S3 bucket imports boto3, which ``uv run`` provides).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
HOME = Path(os.environ.get("DEVSTACK_HOME", PROJECT / ".devstack")).resolve()

PG_VERSION = "15"
PG_PORT = int(os.environ.get("POSTGRES_PORT", "5432"))
PG_USER = os.environ.get("POSTGRES_USER", "integration")
PG_PASSWORD = os.environ.get("POSTGRES_PASSWORD", "integration")
PG_DATABASES = ("integration_patterns", "dagster")
RABBIT_PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
MONGO_PORT = int(os.environ.get("MONGO_PORT", "27017"))
PARTNER_API_PORT = int(os.environ.get("PARTNER_API_PORT", "8765"))
S3_PORT = int(os.environ.get("S3_PORT", "7070"))
S3_BUCKET = os.environ.get("S3_BUCKET", "integration-patterns")
S3_ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID", "devstack-access")
S3_SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "devstack-secret-key")
S3_REGION = os.environ.get("AWS_REGION", "us-east-1")
# versitygw, an Apache-2.0 S3 gateway onto a POSIX directory, built from the Go module proxy.
VERSITYGW = "github.com/versity/versitygw/cmd/versitygw@v1.7.0"


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message names it and shows its log."""


def log(message: str) -> None:
    """Progress goes to stderr so that ``status`` output stays parseable."""
    sys.stderr.write(f"[devstack] {message}\n")
    sys.stderr.flush()


def run(cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None, **kw):
    """Run a command, capturing output, with the failing command's output in the error."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw
    )
    if check and proc.returncode != 0:
        raise ServiceError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    name: str,
    ready: Callable[[], bool],
    timeout: float,
    logfile: Path,
    exited: Callable[[], bool] = lambda: False,
) -> None:
    """Poll ``ready`` until it holds; never a fixed sleep. Fails naming the service.

    A process that ``exited`` while we wait fails at once instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if exited():
            raise ServiceError(
                f"{name} exited during start-up; last lines of {logfile}:\n{tail(logfile)}"
            )
        time.sleep(0.3)
    raise ServiceError(
        f"{name} did not become ready within {timeout:.0f}s; last lines of {logfile}:\n"
        f"{tail(logfile)}"
    )


def apt_install(*packages: str) -> None:
    """Install Debian packages that are missing (one ``apt-get update`` first)."""
    missing = [p for p in packages if run(["dpkg", "-s", p], check=False).returncode != 0]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *missing], env=env)


def maven_libs(name: str) -> Path:
    """Copy a pom's runtime jars into HOME/<name>-libs once (Maven's cache persists)."""
    target = HOME / f"{name}-libs"
    stamp = target / ".complete"
    pom = HERE / name / "pom.xml"
    if stamp.exists() and stamp.stat().st_mtime >= pom.stat().st_mtime:
        return target
    log(f"fetching {name} jars from Maven Central")
    shutil.rmtree(target, ignore_errors=True)
    run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ]
    )
    stamp.touch()
    return target


def start_process(
    name: str, cmd: list[str], logfile: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a long-running process in its own session, remembering its pid."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=HOME,
            env={**os.environ, **(env or {})},
        )
    (HOME / f"{name}.pid").write_text(str(proc.pid))
    return proc


def start_and_wait(
    name: str,
    cmd: list[str],
    logfile: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Start a process and wait until it is ready; never leave a half-started one behind."""
    proc = start_process(name, cmd, logfile, env)
    try:
        # poll() also reaps the child, which a signal-0 probe of a zombie would not notice.
        wait_until(name, ready, timeout, logfile, exited=lambda: proc.poll() is not None)
    except ServiceError:
        stop_process(name, timeout=5)
        raise


def pid_alive(name: str) -> int | None:
    """The pid from a pid file if that process still runs."""
    pidfile = HOME / f"{name}.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def stop_process(name: str, timeout: float = 30) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL after ``timeout``."""
    pid = pid_alive(name)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(name):
        time.sleep(0.2)
    if pid_alive(name):
        os.kill(pid, signal.SIGKILL)
    (HOME / f"{name}.pid").unlink(missing_ok=True)


@dataclass
class Service:
    """One local service: how to bring it up, whether it answers, how to stop it."""

    name: str
    port: int
    up: Callable[[], None]
    ready: Callable[[], bool]
    down: Callable[[], None]


# --- PostgreSQL -------------------------------------------------------------------------

PG_LOG = Path(f"/var/log/postgresql/postgresql-{PG_VERSION}-main.log")


def _psql(sql: str, db: str = "postgres") -> str:
    return run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT), "-d", db, "-tAc", sql]
    ).stdout.strip()


def _pg_ready() -> bool:
    return (
        port_open(PG_PORT)
        and run(["pg_isready", "-h", HOST, "-p", str(PG_PORT)], check=False).returncode == 0
    )


def postgres_up() -> None:
    """Start the apt cluster on loopback and create the project's role and databases."""
    apt_install(f"postgresql-{PG_VERSION}", f"postgresql-client-{PG_VERSION}")
    clusters = run(["pg_lsclusters", "-h"]).stdout
    if not any(line.split()[:2] == [PG_VERSION, "main"] for line in clusters.splitlines()):
        run(["pg_createcluster", PG_VERSION, "main", "-p", str(PG_PORT)])
    if not _pg_ready():
        log("starting PostgreSQL")
        run(
            [
                "pg_ctlcluster",
                PG_VERSION,
                "main",
                "start",
                "--",
                "-o",
                f"-c listen_addresses={HOST} -c port={PG_PORT}",
            ],
            check=False,
        )
        wait_until("postgresql", _pg_ready, 60, PG_LOG)
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{PG_USER}'") != "1":
        # CREATEROLE lets tests make throw-away roles (e.g. to trace a secret end to end).
        _psql(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}' CREATEDB CREATEROLE")
    for db in PG_DATABASES:
        if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
            _psql(f"CREATE DATABASE {db} OWNER {PG_USER}")


def postgres_down() -> None:
    """Stop the cluster (fast mode: roll back open transactions)."""
    run(["pg_ctlcluster", PG_VERSION, "main", "stop", "-m", "fast"], check=False)


# --- RabbitMQ ---------------------------------------------------------------------------

RABBIT_ENV = {
    # RabbitMQ and epmd listen on every interface unless told otherwise.
    "RABBITMQ_NODE_IP_ADDRESS": HOST,
    "RABBITMQ_NODE_PORT": str(RABBIT_PORT),
    "ERL_EPMD_ADDRESS": HOST,
    "RABBITMQ_DIST_PORT": str(RABBIT_PORT + 20000),
    # The inter-node (distribution) listener needs its own setting to stay on loopback.
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
}
RABBIT_LOG_DIR = Path("/var/log/rabbitmq")


def _rabbit_ready() -> bool:
    return (
        port_open(RABBIT_PORT)
        and run(["rabbitmqctl", "-q", "status"], check=False, env=RABBIT_ENV, timeout=30).returncode
        == 0
    )


def rabbitmq_up() -> None:
    """Start rabbitmq-server detached on loopback and wait for the node to boot."""
    apt_install("rabbitmq-server")
    if _rabbit_ready():
        return
    log("starting RabbitMQ")
    run(["rabbitmq-server", "-detached"], env=RABBIT_ENV, check=False)
    logs = sorted(RABBIT_LOG_DIR.glob("rabbit@*.log")) or [RABBIT_LOG_DIR / "rabbit.log"]
    wait_until("rabbitmq", lambda: port_open(RABBIT_PORT), 90, logs[-1])
    run(["rabbitmqctl", "await_startup", "--timeout", "60"], env=RABBIT_ENV)


def rabbitmq_vhost(name: str, *, delete: bool = False) -> None:
    """Create (or delete) a virtual host that ``RABBITMQ_USER`` may use fully.

    A vhost is RabbitMQ's namespace: a Celery deployment or test in its own never sees
    another's queues, while the node (and everyone else's vhosts) stays as it is.
    """
    if delete:
        run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, env=RABBIT_ENV, timeout=60)
        return
    user = os.environ.get("RABBITMQ_USER", "guest")
    run(["rabbitmqctl", "-q", "add_vhost", name], check=False, env=RABBIT_ENV, timeout=60)
    run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
        env=RABBIT_ENV,
        timeout=60,
    )


def rabbitmq_down() -> None:
    """Stop the node if it runs."""
    run(["rabbitmqctl", "stop"], check=False, env=RABBIT_ENV, timeout=60)


# --- Kafka ------------------------------------------------------------------------------

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
    confluent-kafka is imported here, not at the top, so the rest of this module stays
    stdlib-only (``make services`` runs it inside the project environment).
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


def kafka_up() -> None:
    """Format (once) and start a combined broker+controller with a dynamic quorum.

    Ready means a consumer group can fetch offsets, not merely that the port is open.
    """
    if port_open(KAFKA_PORT):
        wait_until("kafka", _kafka_group_ready, 120, KAFKA_LOG)
        return
    libs = maven_libs("kafka")
    data = HOME / "kafka" / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = HOME / "kafka" / "server.properties"
    props.write_text(
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
    logcfg = f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}"
    classpath = f"{libs}/*"
    run(
        [
            "java",
            "-Xmx256m",
            logcfg,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
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
    start_and_wait(
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
    stop_process("kafka")


# --- MongoDB wire (mongo-java-server) ---------------------------------------------------

MONGO_LOG = HOME / "mongo" / "mongo.log"


def mongo_up() -> None:
    """Start mongo-java-server with its H2 file backend via Java's single-file launcher."""
    if port_open(MONGO_PORT):
        return
    libs = maven_libs("mongo")
    (HOME / "mongo").mkdir(parents=True, exist_ok=True)
    log("starting the MongoDB-wire server")
    start_and_wait(
        "mongo",
        [
            "java",
            # Aggregations are in-memory full scans: 1M events need well over 512 MiB.
            "-Xmx3g",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            f"{libs}/*",
            str(HERE / "mongo" / "MongoServerMain.java"),
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
    stop_process("mongo")


# --- Partner-API simulator -------------------------------------------------------------

PARTNER_API_LOG = HOME / "partner-api" / "partner-api.log"


def _partner_api_ready() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{HOST}:{PARTNER_API_PORT}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def partner_api_up() -> None:
    """Serve the project's partner-API simulator (needs the project's Python environment)."""
    if _partner_api_ready():
        return
    log("starting the partner-API simulator")
    start_and_wait(
        "partner-api",
        [
            sys.executable,
            "-m",
            "devstack.partner_api",
            "--host",
            HOST,
            "--port",
            str(PARTNER_API_PORT),
        ],
        PARTNER_API_LOG,
        _partner_api_ready,
        60,
    )


def partner_api_down() -> None:
    """Stop the simulator."""
    stop_process("partner-api", timeout=10)


# --- S3-compatible object storage (versitygw) ---------------------------------------------

S3_LOG = HOME / "s3" / "versitygw.log"


def _s3_ready() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{HOST}:{S3_PORT}/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def versitygw_binary() -> Path:
    """``go install`` the pinned versitygw once into HOME/bin (Go's module cache persists)."""
    binary = HOME / "bin" / "versitygw"
    stamp = HOME / "bin" / ".versitygw-version"
    if binary.exists() and stamp.exists() and stamp.read_text() == VERSITYGW:
        return binary
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        apt_install("golang-go")
    go = shutil.which("go") or "/usr/local/go/bin/go"
    log(f"go install {VERSITYGW} (a few minutes the first time)")
    started = time.monotonic()
    run([go, "install", VERSITYGW], env={"GOBIN": str(HOME / "bin"), "CGO_ENABLED": "0"})
    stamp.write_text(VERSITYGW)
    log(f"versitygw built in {time.monotonic() - started:.0f}s")
    return binary


def _create_bucket() -> None:
    """Create the project's bucket through the S3 API itself (boto3, from dagster-aws)."""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{S3_PORT}",
        region_name=S3_REGION,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )
    try:
        client.create_bucket(Bucket=S3_BUCKET)
        log(f"created bucket {S3_BUCKET}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise ServiceError(f"could not create bucket {S3_BUCKET}: {exc}") from exc


def s3_up() -> None:
    """Serve HOME/s3/root over S3 on loopback (metadata in sidecar files) and make the bucket.

    ``--sidecar`` keeps object metadata in files, so it works on filesystems without user
    xattrs; the root key pair checks every request's SigV4 signature, as AWS does.
    """
    if not _s3_ready():
        binary = versitygw_binary()
        root, meta = HOME / "s3" / "root", HOME / "s3" / "meta"
        root.mkdir(parents=True, exist_ok=True)
        meta.mkdir(parents=True, exist_ok=True)
        log("starting versitygw (S3)")
        start_and_wait(
            "s3",
            [
                str(binary),
                "--port",
                f"{HOST}:{S3_PORT}",
                "--region",
                S3_REGION,
                "--health",
                "/health",
                "--quiet",
                "posix",
                "--sidecar",
                str(meta),
                str(root),
            ],
            S3_LOG,
            _s3_ready,
            60,
            env={"ROOT_ACCESS_KEY": S3_ACCESS_KEY, "ROOT_SECRET_KEY": S3_SECRET_KEY},
        )
    _create_bucket()


def s3_down() -> None:
    """Stop the gateway; the objects stay on disk under HOME/s3/root."""
    stop_process("s3", timeout=10)


SERVICES = {
    s.name: s
    for s in (
        Service("postgresql", PG_PORT, postgres_up, _pg_ready, postgres_down),
        Service(
            "rabbitmq", RABBIT_PORT, rabbitmq_up, lambda: port_open(RABBIT_PORT), rabbitmq_down
        ),
        Service("kafka", KAFKA_PORT, kafka_up, lambda: port_open(KAFKA_PORT), kafka_down),
        Service("mongodb", MONGO_PORT, mongo_up, lambda: port_open(MONGO_PORT), mongo_down),
        Service(
            "partner-api", PARTNER_API_PORT, partner_api_up, _partner_api_ready, partner_api_down
        ),
        Service("s3", S3_PORT, s3_up, _s3_ready, s3_down),
    )
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the command line."""
    parser = argparse.ArgumentParser(description="Install, start, check and stop local services.")
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)}")
    args = parser.parse_args(argv)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    chosen = [SERVICES[n] for n in (args.services or SERVICES)]
    HOME.mkdir(parents=True, exist_ok=True)
    failed = False
    for service in chosen:
        if args.action == "up":
            started = time.monotonic()
            try:
                service.up()
            except (ServiceError, subprocess.TimeoutExpired) as exc:
                log(f"FAILED {service.name}: {exc}")
                failed = True
                continue
            log(
                f"{service.name} ready on {HOST}:{service.port} ({time.monotonic() - started:.1f}s)"
            )
        elif args.action == "down":
            service.down()
            log(f"{service.name} stopped")
        else:
            state = "up" if service.ready() else "down"
            failed |= state == "down"
            sys.stdout.write(f"{service.name:<11} {state:<5} {HOST}:{service.port}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
