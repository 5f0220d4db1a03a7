"""The whole customer enrichment against the time of its two source queries alone.

Ours: one partition of the ``customer_enrichment`` job, executed in process (customers SQL,
events pipeline, join and score, checks, transactional upsert, IO manager round trips).
Baseline, alternating with ours: the two source reads (``fetch_customers`` and
``fetch_user_events``) and nothing else: the floor any implementation pays. The ratio says
how much of the wall time is the reads; the goal (0.5, ours) is that everything else costs
no more than the reads themselves. Peak Python memory of one job run (tracemalloc, numpy
included) and the process's max RSS go in ``extra``.

The preset is ``medium`` (10,000 customers, 100,000 orders, 100,000 events) unless
``BENCH_ENRICHMENT_PRESET`` says otherwise. The issue asks for ``large``, but on this machine
the MongoDB-wire server (mongo-java-server, H2 backend, in-memory aggregation) ran out of
Java heap (-Xmx512m) aggregating 1,000,000 events and dropped the connection, taking the
shared server down for everyone; only run ``large`` against a server with several GB of heap
or a real mongod. The data is seeded once into its own schema and collection and reused
while its counts still match.
"""

import datetime as dt
import os
import resource
import statistics
import time
import tracemalloc

import dagster as dg
from psycopg import sql

from bench.report import Comparison, write
from devstack import sample_data
from devstack.enrichment_defs import enrichment_definitions
from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment.queries import fetch_customers, fetch_user_events
from integration_patterns.defs.enrichment.store import EnrichmentStore

REPETITIONS = 3
END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PARTITION = "2026-01-31"
STORE = EnrichmentStore(schema_name="bench_enrichment", events_collection="bench_user_events")


def _seeded(postgres, mongo, volume: sample_data.Volume) -> bool:
    """Whether the bench's data already holds this volume (seeding large takes minutes)."""
    try:
        (orders,) = postgres.fetch_all(
            sql.SQL("SELECT count(*) FROM {}").format(STORE.table("orders"))
        )[0]
    except Exception:  # no table yet
        return False
    events = mongo.db()[STORE.events_collection].estimated_document_count()
    return orders == volume.orders and events == volume.events


def _run_job(defs: dg.Definitions, postgres) -> float:
    """One partition from an empty target (untimed drop), as a first daily run would be."""
    with postgres.get_connection() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(STORE.table("customer_analytics")))
    started = time.perf_counter()
    result = defs.resolve_job_def("customer_enrichment").execute_in_process(partition_key=PARTITION)
    seconds = time.perf_counter() - started
    assert result.success
    return seconds


def _source_queries(postgres, mongo) -> float:
    window = STORE.window(assets.ENRICHMENT_PARTITIONS.time_window_for_partition_key(PARTITION))
    started = time.perf_counter()
    fetch_customers(postgres, STORE, window)
    fetch_user_events(mongo, STORE, window)
    return time.perf_counter() - started


def main() -> None:
    preset = os.environ.get("BENCH_ENRICHMENT_PRESET", "medium")
    volume = sample_data.PRESETS[preset]
    postgres, mongo = sample_data.resources_from_env()
    try:
        seed_seconds = None
        if not _seeded(postgres, mongo, volume):
            report = sample_data.seed(
                postgres,
                mongo,
                volume=volume,
                schema=STORE.schema_name,
                collection=STORE.events_collection,
                end=END,
            )
            seed_seconds = report.seconds
        defs = enrichment_definitions(STORE)
        _run_job(defs, postgres)  # warm-up: imports and first-run costs, not measured
        ours, floor = [], []
        for _ in range(REPETITIONS):
            floor.append(_source_queries(postgres, mongo))
            ours.append(_run_job(defs, postgres))
        tracemalloc.start()
        _run_job(defs, postgres)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        postgres.close()
        mongo.close()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write(
        "enrichment",
        [
            Comparison(
                name="vs source queries",
                unit="s",
                ours=round(statistics.median(ours), 2),
                baseline_name="customers SQL + events pipeline",
                baseline=round(statistics.median(floor), 2),
                goal=0.5,
                higher_is_better=False,
                extra={
                    "preset": preset,
                    "customers": volume.customers,
                    "orders": volume.orders,
                    "events": volume.events,
                    "job_samples_s": [round(s, 2) for s in ours],
                    "query_samples_s": [round(s, 2) for s in floor],
                    "peak_traced_memory_mb": round(peak / 2**20, 1),
                    "process_max_rss_mb": round(max_rss_mb, 1),
                    "seed_seconds": seed_seconds,
                },
            )
        ],
    )
