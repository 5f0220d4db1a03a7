"""Partner-record assets against the simulator (real uvicorn process) and real PostgreSQL.

Why: the pattern's promise is end to end: whatever the partner throws at us, every valid
record lands in ``partner_records`` exactly once, every malformed one in the quarantine
with its reason, the next run fetches only what is new, the partner never sees its limit
broken, and no secret shows up in the run's logs, metadata or errors.
"""

from collections.abc import Iterator

import dagster as dg
import pytest

from devstack.demo_external_api import run_demo
from devstack.partner_api.process import SimulatorProcess
from devstack.partner_api.state import record
from integration_patterns.defs.external_api.assets import (
    QUARANTINE_CHECK,
    partner_records,
    partner_records_hourly,
    partner_records_job,
    partner_records_raw,
)
from integration_patterns.defs.external_api.resources import (
    PartnerApiResource,
    external_api_resources,
)
from integration_patterns.defs.external_api.storage import QUARANTINE, RECORDS, WATERMARK
from integration_patterns.defs.external_api.transform import PartnerRecord, to_internal
from integration_patterns.defs.resources import resources as shared_resources

CLIENT_ID = "asset-client"
SECRET = "Asset-s3cret-Value-41c0"
SERVER_LIMIT = {"rate_limit": 10, "rate_window": 1.0}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        config={"clients": {CLIENT_ID: SECRET, "partner-demo": "partner-demo-pw"}}
    ) as process:
        yield process


@pytest.fixture
def source(postgres, unique) -> Iterator[str]:
    """A source label of this test's own; its rows are removed afterwards."""
    name = f"test_{unique}"
    yield name
    with postgres.get_connection() as conn:
        for table in (RECORDS, QUARANTINE, WATERMARK):
            conn.execute(f"DELETE FROM {table} WHERE source = %s", (name,))  # type: ignore[arg-type]


def partner_api(sim: SimulatorProcess, source: str, **overrides) -> PartnerApiResource:
    settings = {
        "base_url": sim.url,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "read_timeout": 0.5,
        "backoff_base": 0.02,
        "backoff_cap": 0.2,
        "max_retries": 8,
        "rate_limit_per_minute": 540,
        "source_name": source,
    }
    return PartnerApiResource(**(settings | overrides))


def fetch(sim, postgres, source, *, instance=None, page_size=20, **overrides):
    return dg.materialize(
        [partner_records_raw, partner_records],
        resources={"partner_api": partner_api(sim, source, **overrides), "postgres": postgres},
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"partner_records_raw": {"config": {"page_size": page_size}}}},
    )


def metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(asset):
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def stored(postgres, source) -> tuple[list[str], list[tuple[str | None, str]]]:
    with postgres.get_connection() as conn:
        ids = conn.execute(
            f"SELECT id FROM {RECORDS} WHERE source = %s ORDER BY id",  # type: ignore[arg-type]
            (source,),
        ).fetchall()
        held = conn.execute(
            f"SELECT external_id, reason FROM {QUARANTINE} WHERE source = %s",  # type: ignore[arg-type]
            (source,),
        ).fetchall()
    return [row[0] for row in ids], [(row[0], row[1]) for row in held]


def test_faulty_partner_still_delivers_every_record_exactly_once(sim, postgres, source):
    total = 120
    faults = dict.fromkeys(
        ("rate_limit", "server_error", "revoke", "slow", "drop", "rate_limit_date"), 0.04
    )
    sim.reset(
        total_records=total, malformed_rate=0.2, faults=faults, slow_seconds=1.0, **SERVER_LIMIT
    )
    result = fetch(sim, postgres, source)
    assert result.success

    expected = [to_internal(record(i, 0.2)) for i in range(total)]
    valid = sorted(r.id for r in expected if isinstance(r, PartnerRecord))
    ids, held = stored(postgres, source)
    assert ids == valid  # every valid record, once
    assert len(held) == total - len(valid) > 0  # every malformed one, with a reason
    assert all(reason for _, reason in held)
    stats = sim.stats()
    assert stats["violations"] == []
    assert sum(stats["faults"].values()) > 0

    raw = metadata(result, "partner_records_raw")
    assert raw["records"] == total and raw["pages"] == 6 and raw["api_version"] == "2.4.0"
    for key in ("retries", "rate_limited_429", "reauthentications"):
        assert key in raw
    assert raw["retries"] + raw["reauthentications"] > 0
    assert 0 < raw["latency_p50_ms"] <= raw["latency_p95_ms"]
    loaded = metadata(result, "partner_records")
    assert loaded["inserted"] == len(valid) and loaded["quarantined"] == len(held)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == QUARANTINE_CHECK
    assert not check.passed  # 20% malformed is above the 5% threshold


def test_next_run_fetches_only_new_records(sim, postgres, source):
    sim.reset(total_records=50)
    first = fetch(sim, postgres, source)
    assert first.success and metadata(first, "partner_records")["inserted"] == 50

    sim.configure(total_records=70)
    second = fetch(sim, postgres, source)
    assert second.success
    raw = metadata(second, "partner_records_raw")
    # the mark is inclusive: the newest stored record comes again, and nothing older
    assert raw["records"] == 21
    loaded = metadata(second, "partner_records")
    assert (loaded["inserted"], loaded["updated"], loaded["unchanged"]) == (20, 0, 1)
    assert len(stored(postgres, source)[0]) == 70
    (check,) = second.get_asset_check_evaluations()
    assert check.passed


def test_secrets_never_in_logs_metadata_or_errors(sim, postgres, source):
    instance = dg.DagsterInstance.ephemeral()
    sim.reset(total_records=40, revoke_after_pages=2)
    ok = fetch(sim, postgres, source, instance=instance, page_size=10)
    tokens = sim.stats()["issued_tokens"]
    sim.reset(always="403")  # the simulator echoes the bearer token in this error body
    failed = fetch(sim, postgres, source, instance=instance)
    tokens += sim.stats()["issued_tokens"]
    assert ok.success and not failed.success
    assert metadata(ok, "partner_records_raw")["reauthentications"] == 1
    assert len(tokens) == 3

    text = "\n".join(repr(entry) for run in (ok, failed) for entry in instance.all_logs(run.run_id))
    assert "403" in text and "***" in text  # the error is there, with the token masked
    assert SECRET not in text
    for token in tokens:
        assert token not in text


def test_demo_reports_arrivals_and_quarantine(sim, postgres, source):
    sim.reset()
    report = run_demo(dg.DagsterInstance.ephemeral(), sim.url, source_name=source)
    ids, held = stored(postgres, source)
    assert "succeeded" in report
    assert f"arrived: {len(ids)} records" in report and len(ids) > 150
    assert f"quarantined: {len(held)} items" in report and held


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (
            {"display_name": "x", "metrics": {"value": 1}, "created_at": "2026-01-01T00:00:00Z"},
            "missing external_id",
        ),
        (
            {"external_id": "a", "metrics": {"value": 1}, "created_at": "2026-01-01T00:00:00Z"},
            "missing display_name",
        ),
        (
            {"external_id": "a", "display_name": "x", "created_at": "2026-01-01T00:00:00Z"},
            "missing metrics",
        ),
        # a boolean is an int to Python, never a metric value
        (
            {
                "external_id": "a",
                "display_name": "x",
                "metrics": {"value": True},
                "created_at": "2026-01-01T00:00:00Z",
            },
            "metrics.value is not a number: True",
        ),
        (
            {
                "external_id": "a",
                "display_name": "x",
                "metrics": {"value": float("nan")},
                "created_at": "2026-01-01T00:00:00Z",
            },
            "metrics.value is not a number: nan",
        ),
        (
            {"external_id": "a", "display_name": "x", "metrics": {"value": 1}, "created_at": 17},
            "created_at is not ISO 8601: 17",
        ),
        (["not", "an", "object"], "not an object: list"),
    ],
)
def test_malformed_items_are_quarantined_with_the_reason(item, reason):
    result = to_internal(item)
    assert not isinstance(result, PartnerRecord)
    assert result.reason == reason and result.payload == item


def test_valid_item_maps_to_the_internal_schema():
    item = {
        "external_id": "P1",
        "display_name": "Ada",
        "metrics": {"value": 3},
        "created_at": "2026-01-01T01:00:00+01:00",
        "api_version": "2.4.0",
    }
    result = to_internal(item)
    assert isinstance(result, PartnerRecord)
    assert (result.id, result.name, result.value) == ("P1", "Ada", 3.0)
    assert result.timestamp.isoformat() == "2026-01-01T00:00:00+00:00"  # normalised to UTC


def test_definitions_wire_job_schedule_and_resource():
    defs = dg.Definitions.merge(
        shared_resources(),
        external_api_resources(),
        dg.Definitions(
            assets=[partner_records_raw, partner_records],
            jobs=[partner_records_job],
            schedules=[partner_records_hourly],
        ),
    )
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def(partner_records_job.name)
    assert partner_records_hourly.cron_schedule == "0 * * * *"
    assert partner_records_hourly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert partner_records_hourly.job_name == job.name
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} >= {
        "partner_records_raw",
        "partner_records",
    }
    assert "partner_api" in job.resource_defs
