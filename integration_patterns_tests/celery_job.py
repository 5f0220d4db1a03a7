"""The enrichment's Celery job pointed at one test's store and S3 prefix.

A module of its own (not a test module) because every Celery worker imports it to rebuild
the job (``dg.reconstructable``); the test passes its store and prefix in the environment,
which the workers inherit.
"""

import os

import dagster as dg

from devstack.enrichment_defs import enrichment_definitions
from integration_patterns.defs.enrichment.distributed import customer_enrichment_celery
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.s3 import S3ParquetIOManager, S3StorageResource


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
    defs = enrichment_definitions(
        store_from_env(),
        jobs=[customer_enrichment_celery],
        mongo=MongoResource.from_env(**_mongo_timeout()),
        io_manager=S3ParquetIOManager(
            s3_resource=S3StorageResource.from_env(),
            s3_bucket=os.environ["S3_BUCKET"],
            s3_prefix=os.environ["S3_TEST_PREFIX"],
        ),
    )
    return defs.resolve_job_def("customer_enrichment_celery")
