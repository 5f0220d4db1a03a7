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

import dagster as dg
import pandas as pd
import pytest
from psycopg import sql

from integration_patterns.defs.enrichment.upsert import TABLE
from integration_patterns.devstack import sample_data, services
from integration_patterns.devstack.celery_workers import celery_workers
from integration_patterns.resources.s3 import s3_resource_from_env
from integration_patterns_tests import celery_job
from integration_patterns_tests.conftest import PROJECT
from integration_patterns_tests.test_enrichment import PARTITION, run_job, table_rows

END = sample_data.dt.datetime(2026, 2, 1, tzinfo=sample_data.dt.UTC)


@pytest.fixture
def celery_env(unique, store, monkeypatch):
    """Broker vhost, store and S3 prefix of this test, in the environment workers inherit."""
    vhost = f"dagster-test-{unique}"
    services.rabbitmq_vhost(vhost)
    user, password = os.environ["RABBITMQ_USER"], os.environ["RABBITMQ_PASSWORD"]
    host, port = os.environ["RABBITMQ_HOST"], os.environ["RABBITMQ_PORT"]
    settings = {
        "DAGSTER_CELERY_BROKER_URL": f"amqp://{user}:{password}@{host}:{port}/{vhost}",
        "CELERY_TEST_SCHEMA": store.schema_name,
        "CELERY_TEST_COLLECTION": store.events_collection,
        "S3_TEST_PREFIX": f"tests/{unique}",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    yield dict(os.environ)
    services.rabbitmq_vhost(vhost, delete=True)
    client = s3_resource_from_env().get_client()
    bucket = os.environ["S3_BUCKET"]
    for item in client.list_objects_v2(Bucket=bucket, Prefix=settings["S3_TEST_PREFIX"]).get(
        "Contents", []
    ):
        client.delete_object(Bucket=bucket, Key=item["Key"])


@pytest.fixture
def instance(tmp_path):
    """The repository's instance config (PostgreSQL storage), which the workers share."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


@pytest.fixture
def seeded(postgres, mongo, store):
    """The medium preset (10k customers, 100k orders, 100k events) in the test's store."""
    sample_data.seed(
        postgres,
        mongo,
        volume=sample_data.PRESETS["medium"],
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    return store


def step_workers(instance, run_id: str) -> list[tuple[str, str]]:
    """(step, worker) for every step a Celery worker started, in order."""
    pairs = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        if event and "Celery worker" in metadata:
            pairs.append((event.step_key, metadata["Celery worker"].value))
    return pairs


def in_process_table(postgres, store):
    """The analytics table after an in-process run; then emptied for the Celery run."""
    assert run_job(store).success
    rows = table_rows(postgres, store)
    with postgres.get_connection() as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(store.table(TABLE)))
    return rows


def launch(instance):
    """Run the job; its tag (the vhost's suffix) finds it among the shared storage's runs."""
    return dg.execute_job(
        dg.reconstructable(celery_job.enrichment_on_celery),
        instance=instance,
        tags={
            "dagster/partition": PARTITION,
            "test/broker": os.environ["DAGSTER_CELERY_BROKER_URL"][-10:],
        },
        raise_on_error=False,
    )


def current_run_id(instance) -> str | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"test/broker": os.environ["DAGSTER_CELERY_BROKER_URL"][-10:]}),
        limit=1,
    )
    return runs[0].run_id if runs else None


def test_steps_run_on_both_workers_and_match_an_in_process_run(
    celery_env, instance, seeded, postgres, tmp_path
):
    expected = in_process_table(postgres, seeded)
    assert len(expected) == 10_000
    with celery_workers(["worker-a", "worker-b"], env=celery_env, root=tmp_path / "w") as workers:
        result = launch(instance)
        assert result.success
        ran = step_workers(instance, result.run_id)
        # The four assets and the two blocking checks, each a step on a worker.
        assert {step for step, _ in ran} == {
            "customers",
            "user_events",
            "enriched_customers",
            "enriched_customers_score_in_range",
            "enriched_customers_one_row_per_customer",
            "customer_analytics",
        }
        assert {worker for _, worker in ran} == {w.hostname for w in workers.values()}
        # Every worker worked in its own directory.
        assert all(w.workdir.name == w.name for w in workers.values())
    # The steps handed their tables over as Parquet in S3.
    prefix = os.environ["S3_TEST_PREFIX"]
    client = s3_resource_from_env().get_client()
    body = client.get_object(
        Bucket=os.environ["S3_BUCKET"], Key=f"{prefix}/enriched_customers/{PARTITION}.parquet"
    )["Body"].read()
    enriched = pd.read_parquet(io.BytesIO(body))
    assert len(enriched) == 10_000 and enriched["engagement_score"].between(0, 100).all()
    assert table_rows(postgres, seeded) == expected


def test_a_worker_killed_mid_step_hands_the_step_to_the_other(
    celery_env, instance, seeded, postgres, tmp_path
):
    expected = in_process_table(postgres, seeded)
    customers_table = seeded.table("customers")
    with celery_workers(["worker-a", "worker-b"], env=celery_env, root=tmp_path / "w") as workers:
        # Hold the customers step inside its query: a lock the test owns, so the kill lands
        # mid-step whatever the machine's speed.
        with postgres.get_connection() as lock_conn:
            lock_conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(customers_table)
            )
            outcome: dict = {}
            runner = threading.Thread(target=lambda: outcome.update(result=launch(instance)))
            runner.start()
            victim = None
            deadline = time.monotonic() + 180
            while victim is None and time.monotonic() < deadline:
                run_id = current_run_id(instance)
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
        on = [
            worker for step, worker in step_workers(instance, result.run_id) if step == "customers"
        ]
        survivor = next(w for w in workers.values() if w is not victim)
        assert on == [victim.hostname, survivor.hostname]
    assert table_rows(postgres, seeded) == expected
