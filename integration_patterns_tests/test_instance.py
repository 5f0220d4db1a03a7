"""A run launched under the repository's dagster.yaml is stored in PostgreSQL.

Operators deploy with this file as it is; if its storage section silently fell back to
SQLite (or broke under a dependency upgrade) runs would vanish with the container.
"""

import os
import shutil

import dagster as dg
import psycopg
import pytest

from integration_patterns.definitions import defs
from integration_patterns_tests.conftest import PROJECT


@pytest.fixture
def instance(tmp_path):
    shutil.copy(PROJECT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        yield inst


def _dagster_db():
    return psycopg.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        port=int(os.environ["DAGSTER_PG_PORT"]),
        dbname=os.environ["DAGSTER_PG_DB"],
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
    )


def test_instance_uses_postgres_storage_and_the_run_queue(instance):
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_a_run_is_stored_in_postgres(instance):
    result = defs().resolve_job_def("platform_smoke").execute_in_process(instance=instance)
    assert result.success
    with _dagster_db() as conn:
        row = conn.execute(
            "SELECT status, pipeline_name FROM runs WHERE run_id = %s", (result.run_id,)
        ).fetchone()
        events = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (result.run_id, "ASSET_MATERIALIZATION"),
        ).fetchone()
    assert row == ("SUCCESS", "platform_smoke")
    assert events == (1,)
