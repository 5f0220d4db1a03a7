"""Wires one resource per external system from the environment.

Secrets and addresses arrive only here, as ``dg.EnvVar`` resolved when a run starts, so
they never appear in code, run config or the UI. Which variable feeds which field is each
resource's ``env_vars`` (``resources/env.py``), the table ``Resource.from_env()`` reads too.
``.env.example`` lists every variable with the value that points at the local services
(``make`` copies it to ``.env``).
"""

import dagster as dg

from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns.resources.s3 import S3ParquetIOManager, S3StorageResource


@dg.definitions
def resources() -> dg.Definitions:
    """The shared resources, keyed by the parameter names assets and ops use.

    Asset outputs go to S3 (``io_manager``), so any process that runs a step (a Celery
    worker, a re-execution) reads its inputs from where the previous step wrote them.
    """
    s3 = S3StorageResource.from_env_vars()  # one instance: each costs Dagster a config schema
    return dg.Definitions(
        resources={
            "postgres": PostgresResource.from_env_vars(),
            "mongo": MongoResource.from_env_vars(),
            "kafka": KafkaResource.from_env_vars(),
            "rabbitmq": RabbitMQResource.from_env_vars(),
            "s3": s3,
            "io_manager": S3ParquetIOManager.from_env_vars(s3_resource=s3),
        }
    )
