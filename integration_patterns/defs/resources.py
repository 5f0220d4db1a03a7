"""Wires one resource per external system from the environment.

Secrets and addresses arrive only here, as ``dg.EnvVar`` resolved when a run starts, so
they never appear in code, run config or the UI. ``.env.example`` lists every variable with
the value that points at the local services (``make`` copies it to ``.env``).
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
    s3 = S3StorageResource(
        endpoint_url=dg.EnvVar("AWS_ENDPOINT_URL_S3"),
        region_name=dg.EnvVar("AWS_REGION"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    return dg.Definitions(
        resources={
            "postgres": PostgresResource(
                host=dg.EnvVar("POSTGRES_HOST"),
                port=dg.EnvVar.int("POSTGRES_PORT"),
                dbname=dg.EnvVar("POSTGRES_DB"),
                user=dg.EnvVar("POSTGRES_USER"),
                password=dg.EnvVar("POSTGRES_PASSWORD"),
                sslmode=dg.EnvVar("POSTGRES_SSLMODE"),
                sslrootcert=dg.EnvVar("POSTGRES_SSLROOTCERT"),
                min_size=dg.EnvVar.int("POSTGRES_POOL_MIN_SIZE"),
                max_size=dg.EnvVar.int("POSTGRES_POOL_MAX_SIZE"),
            ),
            "mongo": MongoResource(
                host=dg.EnvVar("MONGO_HOST"),
                port=dg.EnvVar.int("MONGO_PORT"),
                database=dg.EnvVar("MONGO_DB"),
                uri=dg.EnvVar("MONGO_URI"),
            ),
            "kafka": KafkaResource(
                bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"),
                security_protocol=dg.EnvVar("KAFKA_SECURITY_PROTOCOL"),
                sasl_mechanism=dg.EnvVar("KAFKA_SASL_MECHANISM"),
                sasl_username=dg.EnvVar("KAFKA_SASL_USERNAME"),
                sasl_password=dg.EnvVar("KAFKA_SASL_PASSWORD"),
                ssl_ca_location=dg.EnvVar("KAFKA_SSL_CA_LOCATION"),
            ),
            "rabbitmq": RabbitMQResource(
                host=dg.EnvVar("RABBITMQ_HOST"),
                port=dg.EnvVar.int("RABBITMQ_PORT"),
                username=dg.EnvVar("RABBITMQ_USER"),
                password=dg.EnvVar("RABBITMQ_PASSWORD"),
                url=dg.EnvVar("RABBITMQ_URL"),
            ),
            "s3": s3,
            "io_manager": S3ParquetIOManager(
                s3_resource=s3, s3_bucket=dg.EnvVar("S3_BUCKET"), s3_prefix=dg.EnvVar("S3_PREFIX")
            ),
        }
    )
