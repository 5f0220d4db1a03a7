"""Connection settings of real deployments: URIs, TLS, virtual hosts, pool sizes, SASL.

Why: deployments do not connect to 127.0.0.1 without TLS. What the local services allow is
tested for real: PostgreSQL over TLS on a private server started here (initdb + pg_ctl as
the postgres OS user, a self-signed certificate from openssl; the shared server is never
touched), a RabbitMQ virtual host with its own user (created and deleted here), MongoDB
through a connection string, and Kafka's security settings.
"""

import glob
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from pika.exceptions import ChannelClosedByBroker

from devstack.harness import free_port
from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
PG_USER, PG_PASSWORD = "tlsuser", "tls-Pw-0f9e8d"


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            *["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"],
            *["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
            *["-addext", "subjectAltName=DNS:localhost"],
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class TlsPostgres:
    port: int
    ca: Path  # the server's own self-signed certificate
    other_ca: Path  # a certificate that did not sign the server's

    def resource(self, **settings) -> PostgresResource:
        options = {
            "host": "localhost",
            "port": self.port,
            "dbname": "postgres",
            "user": PG_USER,
            "password": PG_PASSWORD,
            "connect_timeout": 3.0,
            "min_size": 1,
            "max_size": 2,
        }
        return PostgresResource(**(options | settings))


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    """A private PostgreSQL that accepts TCP connections over TLS only."""
    root = Path(tempfile.mkdtemp(prefix="pg-tls-"))
    data, port = root / "data", free_port()
    cert, key = _self_signed(root, "server")
    other, _ = _self_signed(root, "other")
    (root / "pw").write_text(PG_PASSWORD)
    shutil.chown(root, "postgres")
    for path in root.iterdir():
        shutil.chown(path, "postgres")
    key.chmod(0o600)

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, timeout=60)

    as_postgres(
        str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={root / 'pw'}",
        "-A", "scram-sha-256", "--no-sync",
    )  # fmt: skip
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on "
        f"-c ssl_cert_file={cert} -c ssl_key_file={key} -c fsync=off"
    )
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options,
                "-w", "-t", "60", "start")  # fmt: skip
    try:
        yield TlsPostgres(port, cert, other)
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _ssl_in_use(postgres: PostgresResource) -> bool:
    rows = postgres.fetch_all("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return rows[0][0]


@pytest.mark.parametrize(
    "settings",
    [
        {"sslmode": "require"},  # encrypted, certificate not checked
        {"sslmode": "verify-ca", "sslrootcert": "CA"},  # signed by the CA we trust
        {"sslmode": "verify-full", "sslrootcert": "CA"},  # ... and issued for "localhost"
    ],
)
def test_postgres_over_tls_with_a_self_signed_certificate(tls_postgres, settings):
    if settings.get("sslrootcert") == "CA":
        settings = settings | {"sslrootcert": str(tls_postgres.ca)}
    postgres = tls_postgres.resource(**settings, min_size=2, max_size=3)
    try:
        assert _ssl_in_use(postgres)
        stats = postgres.stats()
        assert (stats["pool_min"], stats["pool_max"]) == (2, 3)
    finally:
        postgres.close()


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"sslmode": "disable"}, "no encryption"),  # the server rejects plaintext
        ({"sslmode": "verify-full", "sslrootcert": "OTHER"}, "certificate verify failed"),
        ({"sslmode": "verify-full", "host": "127.0.0.1", "sslrootcert": "CA"}, "127.0.0.1"),
    ],
)
def test_postgres_tls_failures_say_why_without_the_password(tls_postgres, settings, why):
    names = {"CA": str(tls_postgres.ca), "OTHER": str(tls_postgres.other_ca)}
    if "sslrootcert" in settings:
        settings = settings | {"sslrootcert": names[settings["sslrootcert"]]}
    postgres = tls_postgres.resource(**settings)
    with pytest.raises(ServiceUnavailableError) as raised:
        postgres.open()
    assert why in str(raised.value) and PG_PASSWORD not in str(raised.value)


def test_postgres_settings_from_the_environment_and_their_validation(tls_postgres):
    env = {
        "POSTGRES_HOST": "localhost",
        "POSTGRES_PORT": str(tls_postgres.port),
        "POSTGRES_DB": "postgres",
        "POSTGRES_USER": PG_USER,
        "POSTGRES_PASSWORD": PG_PASSWORD,
        "POSTGRES_SSLMODE": "verify-full",
        "POSTGRES_SSLROOTCERT": str(tls_postgres.ca),
        "POSTGRES_POOL_MIN_SIZE": "0",
        "POSTGRES_POOL_MAX_SIZE": "5",
    }
    postgres = PostgresResource.from_env(env)
    try:
        assert _ssl_in_use(postgres) and postgres.stats()["pool_max"] == 5
    finally:
        postgres.close()
    with pytest.raises(ValueError, match="sslmode must be one of"):
        PostgresResource.from_env(env | {"POSTGRES_SSLMODE": "verify"}).open()
    with pytest.raises(ValueError, match="pool sizes"):
        PostgresResource.from_env(env | {"POSTGRES_POOL_MIN_SIZE": "6"}).open()


# --- RabbitMQ: an AMQP URL with a virtual host and a user of its own ----------------------


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


@pytest.fixture(scope="module")
def vhost_user() -> Iterator[tuple[str, str, str]]:
    unique = uuid.uuid4().hex[:10]
    vhost, user, password = f"vh-{unique}", f"user-{unique}", f"pw/{unique}:@%"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("add_user", user, password)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield vhost, user, password
    finally:
        _rabbitmqctl("delete_user", user)
        _rabbitmqctl("delete_vhost", vhost)


def _url(user: str, password: str, vhost: str) -> str:
    user, password, vhost = (quote(part, safe="") for part in (user, password, vhost))
    return f"amqp://{user}:{password}@127.0.0.1:5672/{vhost}"


def test_rabbitmq_url_with_its_own_virtual_host_and_user(vhost_user, rabbitmq):
    vhost, user, password = vhost_user
    scoped = RabbitMQResource(url=_url(user, password, vhost), heartbeat_s=17)
    assert scoped.address == f"127.0.0.1:5672 vhost {vhost}"
    assert scoped.parameters().heartbeat == 17  # the resource's defaults fill the gaps
    with scoped.channel() as channel:
        scoped.declare_queue(channel, "orders")
        scoped.publish(channel, exchange="", routing_key="orders", body=b"{}", message_id="1")
    listed = _rabbitmqctl("list_queues", "-p", vhost, "name", "messages")
    assert "orders\t1" in listed
    with rabbitmq.channel() as channel, pytest.raises(ChannelClosedByBroker):
        channel.queue_declare("orders", passive=True)  # not in the default virtual host
    assert password not in repr(scoped)


def test_rabbitmq_url_with_a_wrong_password_fails_without_revealing_it(vhost_user):
    vhost, user, password = vhost_user
    wrong = RabbitMQResource(url=_url(user, password + "x", vhost))
    with pytest.raises(ServiceUnavailableError) as raised, wrong.connection():
        pass
    assert password not in str(raised.value) and vhost in str(raised.value)


def test_amqps_url_brings_tls_and_its_port():
    params = RabbitMQResource(url="amqps://u:p@broker.example.com/orders").parameters()
    assert params.ssl_options is not None and params.port == 5671
    assert params.virtual_host == "orders"


# --- MongoDB: a connection string ---------------------------------------------------------


def test_mongo_connection_string_is_used_and_its_options_win(unique):
    uri = "mongodb://127.0.0.1:27017/?directConnection=true&maxPoolSize=3&appname=uri-test"
    mongo = MongoResource(uri=uri, host="192.0.2.1", port=1, database=f"db_{unique}")
    try:
        assert mongo.health().ok
        options = mongo.client().options
        assert options.pool_options.max_pool_size == 3  # from the URI
        assert options.server_selection_timeout == 5  # the resource's default fills the gap
        assert mongo.address == "127.0.0.1:27017"
    finally:
        mongo.client().drop_database(f"db_{unique}")
        mongo.close()


def test_mongo_connection_string_secrets_stay_out_of_messages():
    password = "mongo-Pw-31337"
    uri = (
        f"mongodb://app:{password}@127.0.0.1:1,127.0.0.1:2/?replicaSet=rs0&authSource=admin"
        "&serverSelectionTimeoutMS=300"
    )
    mongo = MongoResource(uri=uri)
    try:
        health = mongo.health()
        assert not health.ok
        assert mongo.address == "127.0.0.1:1,127.0.0.1:2"
        assert password not in str(health) and password not in repr(mongo)
    finally:
        mongo.close()


# --- Kafka: security protocol and SASL ---------------------------------------------------


def test_kafka_plaintext_named_explicitly_works(unique):
    kafka = KafkaResource(security_protocol="PLAINTEXT", client_id=f"c-{unique}")
    assert kafka.health().ok


def test_kafka_sasl_against_a_plaintext_broker_fails_and_keeps_the_password():
    password = "kafka-Pw-4242"
    kafka = KafkaResource(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="app",
        sasl_password=password,
        request_timeout_s=2.0,
    )
    config = kafka._base_config()  # noqa: SLF001 - the settings handed to librdkafka
    assert config["sasl.mechanism"] == "SCRAM-SHA-256" and config["sasl.username"] == "app"
    health = kafka.health()
    assert not health.ok and password not in str(health) and password not in repr(kafka)


def test_kafka_rejects_an_unknown_security_protocol():
    with pytest.raises(ValueError, match="security_protocol must be one of"):
        KafkaResource(security_protocol="TLS").admin()
