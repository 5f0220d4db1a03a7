"""Object storage for asset outputs: dagster-aws's S3 resource and IO manager, tables as Parquet.

Outputs in S3 are what let a step run in another process, container or machine (a Celery
worker, a re-execution) and still find its inputs: the default filesystem IO manager writes
under the daemon's ``DAGSTER_HOME``, which nothing else can read. dagster-aws (0.29) only
pickles, so this keeps its S3 IO manager (paths, partitions, the S3 client) and changes the
format: a DataFrame is written as ``<path>.parquet`` (readable by DuckDB, Spark, pandas), any
other object as dagster-aws's pickle at ``<path>``.
"""

import io
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3PickleIOManager, S3Resource
from dagster_aws.s3.io_manager import PickledObjectS3IOManager
from pydantic import PrivateAttr
from upath import UPath

PARQUET_SUFFIX = ".parquet"


def s3_resource_from_env(env: Mapping[str, str] | None = None) -> S3Resource:
    """An S3Resource from the ``AWS_*`` variables, for code that runs outside Dagster.

    Inside Dagster, ``defs/resources.py`` wires the same variables with ``dg.EnvVar``.
    """
    env = os.environ if env is None else env
    return S3Resource(
        endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or None,
        region_name=env.get("AWS_REGION") or None,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
    )


class _ParquetOrPickleS3(PickledObjectS3IOManager):
    """dagster-aws's path scheme and client; Parquet for DataFrames, pickle for the rest."""

    def _parquet_key(self, path: UPath) -> str:
        return path.as_posix() + PARQUET_SUFFIX

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            super().dump_to_path(context, obj, path)
            return
        buffer = io.BytesIO()
        obj.to_parquet(buffer, engine="pyarrow", index=False)
        buffer.seek(0)
        self.s3.upload_fileobj(buffer, self.bucket, self._parquet_key(path))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._parquet_key(path))["Body"]
        except self.s3.exceptions.NoSuchKey:
            return super().load_from_path(context, path)
        return pd.read_parquet(io.BytesIO(body.read()), engine="pyarrow")

    def path_exists(self, path: UPath) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._parquet_key(path))
        except self.s3.exceptions.ClientError:
            return super().path_exists(path)
        return True

    def unlink(self, path: UPath) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._parquet_key(path))
        super().unlink(path)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        path = self._get_path(context)
        if isinstance(obj, pd.DataFrame):
            uri = f"s3://{self.bucket}/{self._parquet_key(path)}"
            return {"uri": dg.MetadataValue.path(uri), "format": dg.MetadataValue.text("parquet")}
        return super().get_metadata(context, obj)


class S3ParquetIOManager(S3PickleIOManager):
    """Asset and op outputs in S3: DataFrames as Parquet, other values pickled (dagster-aws).

    Configured like dagster-aws's ``S3PickleIOManager``; objects live under
    ``s3://<s3_bucket>/<s3_prefix>/<asset key path>[/<partition>]`` (``.parquet`` for tables).

    Example:
        ```python
        s3 = S3Resource(endpoint_url=dg.EnvVar("AWS_ENDPOINT_URL_S3"))
        io_manager = S3ParquetIOManager(s3_resource=s3, s3_bucket=dg.EnvVar("S3_BUCKET"))
        ```
    """

    _inner: _ParquetOrPickleS3 | None = PrivateAttr(default=None)

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def inner_io_manager(self) -> _ParquetOrPickleS3:  # type: ignore[override]
        """One client per IO manager instance (a step's), created on first use."""
        if self._inner is None:
            self._inner = _ParquetOrPickleS3(
                s3_bucket=self.s3_bucket,
                s3_session=self.s3_resource.get_client(),
                s3_prefix=self.s3_prefix,
            )
        return self._inner
