"""The enrichment's Celery job pointed at one test's store and S3 prefix.

A module of its own (not a test module) because every Celery worker imports it to rebuild
the job (``dg.reconstructable``); the test passes its store and prefix in the environment,
which the workers inherit.
"""

import os

import dagster as dg

from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment.distributed import customer_enrichment_celery
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.resources.s3 import S3ParquetIOManager, s3_resource_from_env
from integration_patterns_tests.conftest import mongo_from_env, postgres_from_env


def store_from_env() -> EnrichmentStore:
    return EnrichmentStore(
        schema_name=os.environ["CELERY_TEST_SCHEMA"],
        events_collection=os.environ["CELERY_TEST_COLLECTION"],
    )


def _mongo_timeout() -> dict[str, int]:
    """The benchmark's large preset needs longer Mongo timeouts on a loaded machine."""
    timeout = os.environ.get("CELERY_TEST_MONGO_TIMEOUT_MS")
    if not timeout:
        return {}
    return {"socket_timeout_ms": int(timeout), "connect_timeout_ms": int(timeout)}


def enrichment_on_celery() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[
            assets.customers,
            assets.user_events,
            assets.enriched_customers,
            assets.customer_analytics,
        ],
        jobs=[customer_enrichment_celery],
        resources={
            "postgres": postgres_from_env(),
            "mongo": mongo_from_env(**_mongo_timeout()),
            "enrichment_store": store_from_env(),
            "io_manager": S3ParquetIOManager(
                s3_resource=s3_resource_from_env(),
                s3_bucket=os.environ["S3_BUCKET"],
                s3_prefix=os.environ["S3_TEST_PREFIX"],
            ),
        },
    )
    return defs.resolve_job_def("customer_enrichment_celery")
