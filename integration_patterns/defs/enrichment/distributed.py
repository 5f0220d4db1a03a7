"""The enrichment on Celery workers: the same four assets, each step on whichever worker is free.

Launch ``customer_enrichment_celery`` (UI, gateway, backfill) once workers run (``make
worker``, twice for two). Steps hand their outputs over through S3 (the ``io_manager``), so
a step never needs the machine of the step before it.
"""

import dagster as dg

from integration_patterns.defs.enrichment.assets import (
    customer_analytics,
    customers,
    enriched_customers,
    user_events,
)
from integration_patterns.distributed.celery_executor import celery_on_rabbitmq

customer_enrichment_celery = dg.define_asset_job(
    "customer_enrichment_celery",
    selection=[customers, user_events, enriched_customers, customer_analytics],
    executor_def=celery_on_rabbitmq,
    description="customer_enrichment with every step on a Celery worker (dagster-celery).",
)
