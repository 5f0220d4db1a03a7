"""Object storage for asset outputs: dagster-aws's S3 client and IO manager, tables as Parquet.

Outputs in S3 are what let a step run in another process, container or machine (a Celery
worker, a re-execution) and still find its inputs: the default filesystem IO manager writes
under the daemon's ``DAGSTER_HOME``, which nothing else can read. dagster-aws (0.29) only
pickles, so this keeps its S3 IO manager (paths, partitions, the S3 client) and changes the
format: a DataFrame is written as ``<path>.parquet`` (readable by DuckDB, Spark, pandas), any
other object as dagster-aws's pickle at ``<path>``.

Both classes here are light: dagster-aws, boto3 and pandas are imported on first use
(``get_client``, the first output), so loading the code location does not pay for them.
"""

import functools
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_patterns.resources.env import EnvConfigured


class S3StorageResource(EnvConfigured, dg.ConfigurableResource):
    """An S3 (or S3-compatible) endpoint; ``get_client()`` is dagster-aws's ``S3Resource`` client.

    The fields are dagster-aws's own names; the client, its session and retries come from
    dagster-aws when first asked for.

    Example:
        ```python
        s3 = S3StorageResource.from_env_vars()  # AWS_*, read when a run starts
        ```
    """

    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint URL; empty for AWS itself."
    )
    region_name: str | None = Field(default=None, description="Region of the bucket.")
    aws_access_key_id: str | None = Field(default=None, description="Access key id.")
    aws_secret_access_key: str | None = Field(
        default=None, repr=False, description="Secret access key (secret)."
    )

    env_vars: ClassVar[Mapping[str, str]] = {
        "endpoint_url": "AWS_ENDPOINT_URL_S3",
        "region_name": "AWS_REGION",
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    }

    def get_client(self) -> Any:
        """A boto3 S3 client built by dagster-aws's ``S3Resource``, one per process and settings."""
        return _shared_client(
            os.getpid(),
            self.endpoint_url or None,
            self.region_name or None,
            self.aws_access_key_id or None,
            self.aws_secret_access_key or None,
        )


@functools.lru_cache(maxsize=8)
def _shared_client(
    pid: int,
    endpoint_url: str | None,
    region_name: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
) -> Any:
    """Build a client once per process: a new one costs 0.1 to 0.8 s on 2 busy cores.

    Dagster sets a step's resources up afresh for every step, and a Celery worker runs
    step after step in one process, so without this every step paid for a botocore session
    parsing the S3 service model again. boto3 clients are thread-safe; the process id in the
    key keeps a forked child from sharing its parent's connections.
    """
    del pid  # only part of the cache key
    from dagster_aws.s3 import S3Resource

    return S3Resource(
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
    ).get_client()


class S3ParquetIOManager(EnvConfigured, dg.ConfigurableIOManager):
    """Asset and op outputs in S3: DataFrames as Parquet, other values pickled (dagster-aws).

    Configured like dagster-aws's ``S3PickleIOManager``; objects live under
    ``s3://<s3_bucket>/<s3_prefix>/<asset key path>[/<partition>]`` (``.parquet`` for tables).

    Example:
        ```python
        io_manager = S3ParquetIOManager.from_env_vars()  # S3_BUCKET, S3_PREFIX, AWS_*
        ```
    """

    s3_resource: S3StorageResource
    s3_bucket: str = Field(description="Bucket holding the outputs.")
    s3_prefix: str = Field(default="dagster", description="Key prefix of every output.")

    env_vars: ClassVar[Mapping[str, str]] = {"s3_bucket": "S3_BUCKET", "s3_prefix": "S3_PREFIX"}

    _inner: Any = PrivateAttr(default=None)

    @classmethod
    def from_env_vars(cls, **overrides: Any) -> Self:
        """The IO manager for Dagster's wiring, its ``s3_resource`` wired from ``AWS_*`` too."""
        return super().from_env_vars(
            **({"s3_resource": S3StorageResource.from_env_vars()} | overrides)
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The IO manager from ``env``, its ``s3_resource`` from the same ``AWS_*``."""
        return super().from_env(
            env, **({"s3_resource": S3StorageResource.from_env(env)} | overrides)
        )

    def inner_io_manager(self) -> Any:
        """dagster-aws's S3 IO manager with Parquet for tables, one client per instance."""
        if self._inner is None:
            from integration_patterns.resources.s3_parquet import ParquetOrPickleS3

            self._inner = ParquetOrPickleS3(
                s3_bucket=self.s3_bucket,
                s3_session=self.s3_resource.get_client(),
                s3_prefix=self.s3_prefix,
            )
        return self._inner

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Store ``obj`` (Parquet for a DataFrame, else pickle)."""
        self.inner_io_manager().handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        """Load the upstream output, whichever format it was stored in."""
        return self.inner_io_manager().load_input(context)
