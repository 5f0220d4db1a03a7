"""The enrichment on two Celery workers with S3 outputs against the same job in process.

Ours: one partition of ``customer_enrichment_celery`` (dagster-celery on the stack's
RabbitMQ, a vhost of its own, two ``solo`` workers in their own directories, every output
through S3 as Parquet), launched with ``execute_job`` on a PostgreSQL-backed instance.
Baseline, alternating with ours: the same assets in process (``execute_in_process``, outputs
in memory). The ratio is in-process time over Celery time: on this 2-core machine no
speed-up is possible, so it measures the distributed engine's overhead (goal 0.7). Both
sides start from an empty analytics table; the workers are warmed by one untimed run (their
first step imports the code location). Each side's last run is broken down per step from
its event log (``bench/step_timeline.py``): where the Celery run's extra time goes.

Also the Kafka orders sensor's tick time at 1 and at 32 partitions (one client per tick).

``BENCH_DISTRIBUTED_PRESET`` picks the data volume (default ``large``: 100,000 customers,
1,000,000 orders and events; ``medium`` for a quick look). The data is seeded once into its
own schema and collection and reused while its counts match.
"""

import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
from psycopg import sql

from bench.report import Comparison, write
from bench.step_timeline import breakdown
from devstack import sample_data, services
from devstack.celery_workers import celery_workers
from devstack.orders_load import produce_orders
from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment.schedule import customer_enrichment
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.defs.messaging.sensor import kafka_orders_sensor
from integration_patterns.defs.messaging.stream import OrdersStreamResource
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.s3 import S3StorageResource
from integration_patterns_tests.conftest import mongo_from_env

PROJECT = Path(__file__).resolve().parents[1]
REPETITIONS = 3
TICKS = 5
END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PARTITION = "2026-01-31"
# mongo-java-server aggregates the large preset's million events in 20 s on an idle machine
# and over 60 s (the resource's socket timeout) on a loaded one, when it also answers pymongo's
# heartbeats later than connectTimeoutMS (5 s), which cancels the operation: both sides wait.
MONGO_TIMEOUT_MS = 600_000


def _store(preset: str) -> EnrichmentStore:
    """A schema and collection per preset: seeded once, reused by every later run."""
    return EnrichmentStore(
        schema_name=f"bench_distributed_{preset}", events_collection=f"bench_dist_events_{preset}"
    )


def _seeded(postgres, mongo, store: EnrichmentStore, volume: sample_data.Volume) -> bool:
    try:
        (orders,) = postgres.fetch_all(
            sql.SQL("SELECT count(*) FROM {}").format(store.table("orders"))
        )[0]
    except Exception:  # no table yet
        return False
    return (
        orders == volume.orders
        and mongo.db()[store.events_collection].estimated_document_count() == volume.events
    )


def _empty_target(postgres, store: EnrichmentStore) -> None:
    with postgres.get_connection() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(store.table("customer_analytics")))


def _in_process(defs: dg.Definitions, postgres, store: EnrichmentStore) -> tuple[float, dict]:
    _empty_target(postgres, store)
    with dg.DagsterInstance.ephemeral() as instance:  # what execute_in_process uses anyway
        started = time.perf_counter()
        result = defs.resolve_job_def("customer_enrichment").execute_in_process(
            partition_key=PARTITION, instance=instance
        )
        seconds = time.perf_counter() - started
        assert result.success
        return seconds, breakdown(instance, result.run_id)


def _on_celery(
    instance: dg.DagsterInstance, postgres, store: EnrichmentStore
) -> tuple[float, dict]:
    from integration_patterns_tests import celery_job  # the workers import it too

    _empty_target(postgres, store)
    started = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(celery_job.enrichment_on_celery),
        instance=instance,
        tags={"dagster/partition": PARTITION},
    )
    seconds = time.perf_counter() - started
    assert result.success
    return seconds, breakdown(instance, result.run_id)


def _idle(timeline: dict) -> float:
    """Seconds of a run during which no step was running (see bench/step_timeline.py)."""
    return (
        timeline["idle_before_first_step_s"]
        + sum(timeline["idle_handoffs_s"])
        + timeline["idle_after_last_step_s"]
    )


def _analytics_rows(postgres, store: EnrichmentStore) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(store.table("customer_analytics"))
    return postgres.fetch_all(query)[0][0]


def _sensor_tick_seconds(kafka: KafkaResource, partitions: int, unique: str) -> list[float]:
    topic = f"bench-orders-{partitions}-{unique}"
    produce_orders(kafka, topic=topic, count=100 * partitions, partitions=partitions)
    stream = OrdersStreamResource(topic=topic, group_id=f"{topic}-group", batch_size=50)
    samples = []
    for _ in range(TICKS):
        context = dg.build_sensor_context(resources={"kafka": kafka, "orders_stream": stream})
        started = time.perf_counter()
        kafka_orders_sensor(context)
        samples.append(time.perf_counter() - started)
    kafka.admin().delete_topics([topic])
    return samples


def main() -> None:
    preset = os.environ.get("BENCH_DISTRIBUTED_PRESET", "large")
    volume = sample_data.PRESETS[preset]
    store = _store(preset)
    unique = uuid.uuid4().hex[:8]
    vhost = f"bench-{unique}"
    env = os.environ
    settings = {
        "DAGSTER_CELERY_BROKER_URL": f"amqp://{env['RABBITMQ_USER']}:{env['RABBITMQ_PASSWORD']}"
        f"@{env['RABBITMQ_HOST']}:{env['RABBITMQ_PORT']}/{vhost}",
        "CELERY_TEST_SCHEMA": store.schema_name,
        "CELERY_TEST_COLLECTION": store.events_collection,
        "S3_TEST_PREFIX": f"bench/{unique}",
        "CELERY_TEST_MONGO_TIMEOUT_MS": str(MONGO_TIMEOUT_MS),
        "PYTHONPATH": str(PROJECT),
    }
    os.environ.update(settings)
    services.rabbitmq_vhost(vhost)
    postgres, mongo = sample_data.resources_from_env()
    home = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    try:
        seed_seconds = None
        if not _seeded(postgres, mongo, store, volume):
            seed_seconds = sample_data.seed(
                postgres,
                mongo,
                volume=volume,
                schema=store.schema_name,
                collection=store.events_collection,
                end=END,
            ).seconds
        job_postgres = sample_data.resources_from_env()[0]
        # Configured like the Celery side's (celery_job): Dagster builds resources from their
        # constructor arguments, so these go in there, not onto a copy.
        job_mongo = mongo_from_env(
            socket_timeout_ms=MONGO_TIMEOUT_MS, connect_timeout_ms=MONGO_TIMEOUT_MS
        )
        defs = dg.Definitions(
            assets=[
                assets.customers,
                assets.user_events,
                assets.enriched_customers,
                assets.customer_analytics,
            ],
            jobs=[customer_enrichment],
            resources={"postgres": job_postgres, "mongo": job_mongo, "enrichment_store": store},
        )
        in_process, celery = [], []
        with (
            dg.DagsterInstance.from_config(str(home)) as instance,
            celery_workers(["bench-a", "bench-b"], env=dict(os.environ), root=home / "w"),
        ):
            _in_process(defs, postgres, store)  # warm-up, not measured
            _on_celery(instance, postgres, store)
            for _ in range(REPETITIONS):
                in_process.append(_in_process(defs, postgres, store))
                celery.append(_on_celery(instance, postgres, store))
            rows = _analytics_rows(postgres, store)
        kafka = KafkaResource(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
        ticks = {p: _sensor_tick_seconds(kafka, p, unique) for p in (1, 32)}
    finally:
        services.rabbitmq_vhost(vhost, delete=True)
        client = S3StorageResource.from_env().get_client()
        listing = client.list_objects_v2(Bucket=env["S3_BUCKET"], Prefix=f"bench/{unique}")
        for item in listing.get("Contents", []):
            client.delete_object(Bucket=env["S3_BUCKET"], Key=item["Key"])
        postgres.close()
        mongo.close()
        shutil.rmtree(home, ignore_errors=True)
    tick_1, tick_32 = (statistics.median(ticks[p]) for p in (1, 32))
    write(
        "distributed",
        [
            Comparison(
                name="celery vs in-process",
                unit="s",
                ours=round(statistics.median(s for s, _ in celery), 2),
                baseline_name="execute_in_process, outputs in memory",
                baseline=round(statistics.median(s for s, _ in in_process), 2),
                goal=0.7,
                higher_is_better=False,
                extra={
                    "preset": preset,
                    "rows": rows,
                    "workers": 2,
                    "celery_samples_s": [round(s, 2) for s, _ in celery],
                    "in_process_samples_s": [round(s, 2) for s, _ in in_process],
                    # The load moves the Mongo aggregation far more than the engine: each
                    # pair's own ratio, and the Celery runs' time with no step running.
                    "pair_ratios": [
                        round(i / c, 3) for (i, _), (c, _) in zip(in_process, celery, strict=True)
                    ],
                    "celery_idle_s": [round(_idle(b), 2) for _, b in celery],
                    # Where the time went in the last repetition of each (bench/step_timeline.py).
                    "celery_breakdown": celery[-1][1],
                    "in_process_breakdown": in_process[-1][1],
                    "seed_seconds": seed_seconds,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                },
            ),
            Comparison(
                name="sensor tick, 32 vs 1 partitions",
                unit="s",
                ours=round(tick_32, 3),
                baseline_name="tick at 1 partition",
                baseline=round(tick_1, 3),
                goal=0.5,
                higher_is_better=False,
                extra={
                    "tick_1_samples_s": [round(s, 3) for s in ticks[1]],
                    "tick_32_samples_s": [round(s, 3) for s in ticks[32]],
                },
            ),
        ],
    )
