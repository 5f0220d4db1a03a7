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
from integration_patterns.resources.s3 import S3ParquetIOManager, S3StorageResource
from integration_patterns_tests.conftest import mongo_from_env, postgres_from_env


def store_from_env() -> EnrichmentStore:
    return EnrichmentStore(
        schema_name=os.environ["CELERY_TEST_SCHEMA"],
        events_collection=os.environ["CELERY_TEST_COLLECTION"],
    )


def enrichment_on_celery() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[
            assets.customers,
            assets.user_events,
            assets.enriched_customers,
            assets.customer_analytics,
        ],
        asset_checks=[assets.score_in_range, assets.one_row_per_customer],
        jobs=[customer_enrichment_celery],
        resources={
            "postgres": postgres_from_env(),
            "mongo": mongo_from_env(),
            "enrichment_store": store_from_env(),
            "io_manager": S3ParquetIOManager(
                s3_resource=S3StorageResource.from_env(),
                s3_bucket=os.environ["S3_BUCKET"],
                s3_prefix=os.environ["S3_TEST_PREFIX"],
            ),
        },
    )
    return defs.resolve_job_def("customer_enrichment_celery")
