"""The S3 IO manager's implementation: dagster-aws's path scheme and client, Parquet for tables.

Imported by ``resources/s3.py`` when a step first stores or loads an output, never when the
code location loads: importing dagster-aws imports its component catalogue (seconds), and
pandas another second and a half, which a run that stores nothing should not pay.
"""

import io
from typing import Any

import dagster as dg
import pandas as pd
from dagster_aws.s3.io_manager import PickledObjectS3IOManager
from upath import UPath

PARQUET_SUFFIX = ".parquet"


class ParquetOrPickleS3(PickledObjectS3IOManager):
    """dagster-aws's path scheme and client; Parquet for DataFrames, pickle for the rest."""

    def _parquet_key(self, path: UPath) -> str:
        return path.as_posix() + PARQUET_SUFFIX

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        """A DataFrame as ``<path>.parquet``; anything else pickled at ``<path>``."""
        if not isinstance(obj, pd.DataFrame):
            super().dump_to_path(context, obj, path)
            return
        buffer = io.BytesIO()
        obj.to_parquet(buffer, engine="pyarrow", index=False)
        buffer.seek(0)
        self.s3.upload_fileobj(buffer, self.bucket, self._parquet_key(path))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        """The Parquet object if there is one, else the pickle."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._parquet_key(path))["Body"]
        except self.s3.exceptions.NoSuchKey:
            return super().load_from_path(context, path)
        return pd.read_parquet(io.BytesIO(body.read()), engine="pyarrow")

    def path_exists(self, path: UPath) -> bool:
        """Whether either form of the output exists."""
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._parquet_key(path))
        except self.s3.exceptions.ClientError:
            return super().path_exists(path)
        return True

    def unlink(self, path: UPath) -> None:
        """Delete both forms of the output."""
        self.s3.delete_object(Bucket=self.bucket, Key=self._parquet_key(path))
        super().unlink(path)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        """The object's URI and format."""
        path = self._get_path(context)
        if isinstance(obj, pd.DataFrame):
            uri = f"s3://{self.bucket}/{self._parquet_key(path)}"
            return {"uri": dg.MetadataValue.path(uri), "format": dg.MetadataValue.text("parquet")}
        return super().get_metadata(context, obj)
