"""The enrichment on two real Celery workers (dagster-celery, RabbitMQ broker, S3 outputs).

Each worker is its own process in its own working directory, sharing nothing with the run
but RabbitMQ, the instance's PostgreSQL and S3. What must hold: steps run on both workers
(the event log names the worker of every step), the outputs are in S3, the analytics table
is identical to an in-process run of the same partition, and a worker SIGKILLed in the middle
of a step hands that step to the other worker (late acknowledgement), so the run still
succeeds with the same table. A RabbitMQ vhost per test keeps other tests' workers away.
"""

import io
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pytest
from psycopg import sql

from devstack import sample_data, services
from devstack.celery_workers import Worker, celery_workers
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.defs.enrichment.upsert import TABLE
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.s3 import S3StorageResource
from integration_patterns_tests import celery_job
from integration_patterns_tests.conftest import PROJECT, mongo_from_env, postgres_from_env
from integration_patterns_tests.test_enrichment import PARTITION, run_job, table_rows

END = sample_data.dt.datetime(2026, 2, 1, tzinfo=sample_data.dt.UTC)


@dataclass
class Setup:
    """What both tests share: the seeded store, the expected table, the workers' env."""

    store: EnrichmentStore
    postgres: PostgresResource
    expected: list[tuple]
    env: dict[str, str]
    instance: dg.DagsterInstance


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    """Seed the medium preset once, run it in-process once, and give each test a clean table.

    Broker vhost, store and S3 prefix are this module's own, in the environment the workers
    inherit; everything is removed afterwards.
    """
    unique = uuid.uuid4().hex[:10]
    vhost = f"dagster-test-{unique}"
    services.rabbitmq_vhost(vhost)
    user, password = os.environ["RABBITMQ_USER"], os.environ["RABBITMQ_PASSWORD"]
    host, port = os.environ["RABBITMQ_HOST"], os.environ["RABBITMQ_PORT"]
    store = EnrichmentStore(schema_name=f"celery_{unique}", events_collection=f"events_{unique}")
    settings = {
        "DAGSTER_CELERY_BROKER_URL": f"amqp://{user}:{password}@{host}:{port}/{vhost}",
        "CELERY_TEST_SCHEMA": store.schema_name,
        "CELERY_TEST_COLLECTION": store.events_collection,
        "S3_TEST_PREFIX": f"tests/{unique}",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    postgres, mongo = postgres_from_env(), mongo_from_env()
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    try:
        # The medium preset: 10k customers, 100k orders, 100k events.
        sample_data.seed(
            postgres,
            mongo,
            volume=sample_data.PRESETS["medium"],
            schema=store.schema_name,
            collection=store.events_collection,
            end=END,
        )
        assert run_job(store).success
        expected = table_rows(postgres, store)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield Setup(store, postgres, expected, dict(os.environ), instance)
    finally:
        services.rabbitmq_vhost(vhost, delete=True)
        client = S3StorageResource.from_env().get_client()
        bucket = os.environ["S3_BUCKET"]
        listing = client.list_objects_v2(Bucket=bucket, Prefix=settings["S3_TEST_PREFIX"])
        for item in listing.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        with postgres.get_connection() as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(store.schema_name)
                )
            )
        mongo.db()[store.events_collection].drop()
        postgres.close()
        mongo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def workers(setup, tmp_path_factory) -> Iterator[dict[str, Worker]]:
    """Two workers, each in its own directory; the second test kills one, so it runs last."""
    root = tmp_path_factory.mktemp("workers")
    with celery_workers(["worker-a", "worker-b"], env=setup.env, root=root) as started:
        yield started


@pytest.fixture
def empty_table(setup) -> Setup:
    with setup.postgres.get_connection() as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(setup.store.table(TABLE)))
    return setup


def step_workers(instance, run_id: str) -> list[tuple[str, str]]:
    """(step, worker) for every step a Celery worker started, in order."""
    pairs = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        if event and "Celery worker" in metadata:
            pairs.append((event.step_key, metadata["Celery worker"].value))
    return pairs


def launch(instance, launch_id: str = ""):
    """Run the job; the ``test/launch`` tag finds it among the shared storage's runs."""
    return dg.execute_job(
        dg.reconstructable(celery_job.enrichment_on_celery),
        instance=instance,
        tags={"dagster/partition": PARTITION, "test/launch": launch_id or uuid.uuid4().hex},
        raise_on_error=False,
    )


def run_id_of(instance, launch_id: str) -> str | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"test/launch": launch_id}), limit=1)
    return runs[0].run_id if runs else None


def test_steps_run_on_both_workers_and_match_an_in_process_run(empty_table, workers):
    setup = empty_table
    assert len(setup.expected) == 10_000
    result = launch(setup.instance)
    assert result.success
    ran = step_workers(setup.instance, result.run_id)
    # The four assets, each a step on a worker (the blocking checks run in their asset's).
    assert {step for step, _ in ran} == {
        "customers",
        "user_events",
        "enriched_customers",
        "customer_analytics",
    }
    assert len(ran) == 4  # each step ran once: none was handed to a second worker
    assert {worker for _, worker in ran} == {w.hostname for w in workers.values()}
    assert all(w.workdir.name == w.name for w in workers.values())  # a directory each
    # The steps handed their tables over as Parquet in S3.
    prefix = os.environ["S3_TEST_PREFIX"]
    client = S3StorageResource.from_env().get_client()
    body = client.get_object(
        Bucket=os.environ["S3_BUCKET"], Key=f"{prefix}/enriched_customers/{PARTITION}.parquet"
    )["Body"].read()
    enriched = pd.read_parquet(io.BytesIO(body))
    assert len(enriched) == 10_000 and enriched["engagement_score"].between(0, 100).all()
    assert table_rows(setup.postgres, setup.store) == setup.expected


def test_a_worker_killed_mid_step_hands_the_step_to_the_other(empty_table, workers):
    setup = empty_table
    instance = setup.instance
    # Hold the customers step inside its query: a lock the test owns, so the kill lands
    # mid-step whatever the machine's speed.
    with setup.postgres.get_connection() as lock_conn:
        lock_conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(setup.store.table("customers"))
        )
        outcome: dict = {}
        launch_id = uuid.uuid4().hex
        runner = threading.Thread(target=lambda: outcome.update(result=launch(instance, launch_id)))
        runner.start()
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and time.monotonic() < deadline:
            run_id = run_id_of(instance, launch_id)
            for step, worker in step_workers(instance, run_id) if run_id else []:
                if step == "customers":
                    victim = next(w for w in workers.values() if w.hostname == worker)
            time.sleep(0.2)
        assert victim is not None, "the customers step never started"
        time.sleep(1.0)  # into its query, blocked on the lock
        victim.kill()
    # Lock released (transaction ended): the redelivered step can finish on the survivor.
    runner.join(timeout=300)
    result = outcome["result"]
    assert result.success
    on = [w for step, w in step_workers(instance, result.run_id) if step == "customers"]
    survivor = next(w for w in workers.values() if w is not victim)
    assert on == [victim.hostname, survivor.hostname]
    assert table_rows(setup.postgres, setup.store) == setup.expected
