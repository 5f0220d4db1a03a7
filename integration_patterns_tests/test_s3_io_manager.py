"""Asset outputs in the real S3 server (versitygw): Parquet for tables, pickles for the rest.

Outputs in S3 are what let another process run the next step. So the Parquet object is
read back by pyarrow without Dagster, and a run that failed at its second step is
re-executed, as a new run, from that step alone, which must read the first step's output
from S3. (Steps in other processes and on other workers: ``test_celery.py``.)
"""

import io
import os
import pickle
from decimal import Decimal

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from integration_patterns.resources.s3 import S3ParquetIOManager, S3StorageResource

PARTITIONS = dg.StaticPartitionsDefinition(["eu", "us"])


@dg.asset(partitions_def=PARTITIONS)
def orders(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """A table with the types the enrichment writes: ints, text, decimals, UTC timestamps."""
    region = context.partition_key
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "region": [region] * 3,
            "total_spent": [Decimal("10.50"), Decimal("0.00"), Decimal("99.99")],
            "last_event_at": pd.to_datetime(
                ["2026-01-01T10:00:00Z", None, "2026-01-02T11:30:00Z"], utc=True
            ),
        }
    )


@dg.asset(partitions_def=PARTITIONS)
def summary(orders: pd.DataFrame) -> dict:
    """Not a table: pickled. Fails while ``FAIL_SUMMARY`` is set, to leave a failed run."""
    if os.environ.get("FAIL_SUMMARY") == "1":
        raise RuntimeError("summary failed on purpose")
    return {"customers": len(orders), "spent": str(sum(orders["total_spent"]))}


@dg.asset(partitions_def=PARTITIONS)
def report(summary: dict) -> str:
    return f"{summary['customers']} customers spent {summary['spent']}"


def s3_job_defs() -> dg.Definitions:
    s3 = S3StorageResource.from_env()
    return dg.Definitions(
        assets=[orders, summary, report],
        jobs=[dg.define_asset_job("s3_round_trip", executor_def=dg.in_process_executor)],
        resources={
            "io_manager": S3ParquetIOManager(
                s3_resource=s3,
                s3_bucket=dg.EnvVar("S3_BUCKET"),
                s3_prefix=dg.EnvVar("S3_TEST_PREFIX"),
            )
        },
    )


def s3_round_trip_job() -> dg.JobDefinition:
    """Module-level factory so each step's process can rebuild the job (reconstructable)."""
    return s3_job_defs().resolve_job_def("s3_round_trip")


@pytest.fixture
def s3_prefix(unique, monkeypatch):
    """The test's own prefix in the bucket (in the environment, so step processes see it)."""
    prefix = f"tests/{unique}"
    monkeypatch.setenv("S3_TEST_PREFIX", prefix)
    yield prefix
    client = S3StorageResource.from_env().get_client()
    bucket = os.environ["S3_BUCKET"]
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def keys_under(prefix: str) -> set[str]:
    client = S3StorageResource.from_env().get_client()
    listing = client.list_objects_v2(Bucket=os.environ["S3_BUCKET"], Prefix=prefix)
    return {item["Key"].removeprefix(prefix + "/") for item in listing.get("Contents", [])}


def read_object(key: str) -> bytes:
    client = S3StorageResource.from_env().get_client()
    return client.get_object(Bucket=os.environ["S3_BUCKET"], Key=key)["Body"].read()


def step_keys(instance, run_id: str) -> set[str]:
    return {
        e.step_key
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        if e.step_key
    }


def test_tables_are_parquet_other_values_pickled_across_processes(s3_prefix):
    with dg.instance_for_test() as instance:
        result = dg.execute_job(
            dg.reconstructable(s3_round_trip_job),
            instance=instance,
            tags={"dagster/partition": "eu"},
        )
        assert result.success
        assert step_keys(instance, result.run_id) == {"orders", "summary", "report"}
    assert keys_under(s3_prefix) == {"orders/eu.parquet", "summary/eu", "report/eu"}

    # Any Parquet reader gets the table, types intact, without Dagster or pickle.
    table = pq.read_table(io.BytesIO(read_object(f"{s3_prefix}/orders/eu.parquet")))
    frame = table.to_pandas()
    assert frame["customer_id"].tolist() == [1, 2, 3]
    assert frame["total_spent"].tolist() == [Decimal("10.50"), Decimal("0.00"), Decimal("99.99")]
    dtype = frame["last_event_at"].dtype
    assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    assert frame["last_event_at"].isna().tolist() == [False, True, False]
    # Each step read its input back from S3 and computed the right value.
    assert pickle.loads(read_object(f"{s3_prefix}/report/eu")) == "3 customers spent 110.49"


def test_failed_run_re_executed_from_its_failed_step_reads_earlier_outputs_from_s3(
    s3_prefix, monkeypatch
):
    monkeypatch.setenv("FAIL_SUMMARY", "1")
    with dg.instance_for_test() as instance:
        job = dg.reconstructable(s3_round_trip_job)
        failed = dg.execute_job(
            job, instance=instance, tags={"dagster/partition": "us"}, raise_on_error=False
        )
        assert not failed.success
        assert step_keys(instance, failed.run_id) == {"orders"}
        assert keys_under(s3_prefix) == {"orders/us.parquet"}
        written = read_object(f"{s3_prefix}/orders/us.parquet")

        monkeypatch.delenv("FAIL_SUMMARY")
        retried = dg.execute_job(
            job,
            instance=instance,
            tags={"dagster/partition": "us"},
            reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance),
        )
        assert retried.success
        # Only the failed step and the one after it ran; orders came from S3, untouched.
        assert step_keys(instance, retried.run_id) == {"summary", "report"}
        loads = [
            e
            for e in instance.all_logs(retried.run_id, of_type=dg.DagsterEventType.LOADED_INPUT)
            if e.step_key == "summary"
        ]
        assert len(loads) == 1
    assert read_object(f"{s3_prefix}/orders/us.parquet") == written
    assert pickle.loads(read_object(f"{s3_prefix}/report/us")) == "3 customers spent 110.49"


def test_io_manager_refuses_a_missing_bucket_with_a_clear_error(s3_prefix):
    s3 = S3StorageResource.from_env()
    manager = S3ParquetIOManager(s3_resource=s3, s3_bucket="no-such-bucket-here")
    with pytest.raises(Exception, match="NoSuchBucket"):
        manager.inner_io_manager()


def test_one_client_per_process_and_settings_never_across_credentials(s3_prefix):
    # Every step sets its resources up again; the client (0.1 to 0.8 s to build) is reused.
    s3 = S3StorageResource.from_env()
    client = s3.get_client()
    assert S3StorageResource.from_env().get_client() is client
    client.put_object(Bucket=os.environ["S3_BUCKET"], Key=f"{s3_prefix}/x", Body=b"1")
    # Other credentials never get that client: the server checks their signature and refuses.
    wrong = s3.model_copy(update={"aws_secret_access_key": "not-the-secret"})
    other = wrong.get_client()
    assert other is not client
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        other.get_object(Bucket=os.environ["S3_BUCKET"], Key=f"{s3_prefix}/x")
