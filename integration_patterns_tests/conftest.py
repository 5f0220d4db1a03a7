"""Shared fixtures: resources pointed at the real local services.

The services are started by ``make test`` (``python -m devstack.services
up``). A fixture whose service does not answer *fails* the tests that use it, with the
service's own error: a suite that skipped when PostgreSQL is down would pass without testing
anything.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from devstack import harness
from devstack.environment import load_env_files
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource

PROJECT = Path(__file__).resolve().parents[1]


load_env_files()  # process env > .env > .env.example, as make layers them


def require_healthy(resource) -> None:
    """Fail (never skip) when the service behind ``resource`` does not answer."""
    health = resource.health()
    if not health.ok:
        pytest.fail(
            f"{health.service} at {health.address} is not answering ({health.detail}); "
            "start the services with `make services`",
            pytrace=False,
        )


# Thin aliases the tests import: each resource reads its own env mapping (``from_env``).
def postgres_from_env(**overrides) -> PostgresResource:
    """A PostgresResource configured like the code location's, with overrides."""
    return PostgresResource.from_env(**overrides)


def mongo_from_env(**overrides) -> MongoResource:
    """A MongoResource configured like the code location's, with overrides."""
    return MongoResource.from_env(**overrides)


def kafka_from_env(**overrides) -> KafkaResource:
    """A KafkaResource configured like the code location's, with overrides."""
    return KafkaResource.from_env(**overrides)


def rabbitmq_from_env(**overrides) -> RabbitMQResource:
    """A RabbitMQResource configured like the code location's, with overrides."""
    return RabbitMQResource.from_env(**overrides)


@pytest.fixture
def postgres() -> Iterator[PostgresResource]:
    """An open pool on the local PostgreSQL, closed after the test."""
    resource = postgres_from_env()
    require_healthy(resource)
    yield resource
    resource.close()


@pytest.fixture
def mongo() -> Iterator[MongoResource]:
    """A client of the local MongoDB-wire server."""
    resource = mongo_from_env()
    require_healthy(resource)
    yield resource
    resource.close()


def delete_topics(kafka: KafkaResource, *, containing: str) -> list[str]:
    """Delete every topic whose name contains ``containing``; the names deleted."""
    admin = kafka.admin()
    names = sorted(name for name in admin.list_topics(timeout=10).topics if containing in name)
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
    return names


@pytest.fixture
def kafka(unique) -> Iterator[KafkaResource]:
    """Client factory for the local Kafka broker.

    Every topic the test named with its ``unique`` suffix is deleted afterwards: the broker
    is shared and long-lived, and thousands of left-over partitions slow it for everyone.
    """
    resource = kafka_from_env()
    require_healthy(resource)
    yield resource
    delete_topics(resource, containing=unique)


@pytest.fixture
def rabbitmq() -> RabbitMQResource:
    """Connections to the local RabbitMQ."""
    resource = rabbitmq_from_env()
    require_healthy(resource)
    return resource


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing one server never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def free_port() -> int:
    """A local TCP port nothing listens on (bound, read, released)."""
    return harness.free_port()


@pytest.fixture
def store(unique, postgres, mongo) -> Iterator[EnrichmentStore]:
    """The enrichment's private schema and events collection, dropped after the test."""
    enrichment = EnrichmentStore(
        schema_name=f"enrich_{unique}", events_collection=f"user_events_{unique}"
    )
    yield enrichment
    with postgres.get_connection() as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(enrichment.schema_name)
            )
        )
    mongo.db()[enrichment.events_collection].drop()
