"""Demo of the external-API pattern: fetch from a running simulator, show what arrived.

``run_demo(instance, base_url)`` asks the simulator for a realistic bad day (a few faults
of every kind and 10% malformed records), runs the partner-record assets in process on
the given instance, and returns a printable report of what was stored and what was
quarantined, with the client's retries, 429s, re-authentications and latencies.
"""

import dagster as dg
import httpx

from integration_patterns.defs.external_api.assets import (
    QUARANTINE_CHECK,
    partner_records,
    partner_records_job,
    partner_records_raw,
)
from integration_patterns.defs.external_api.resources import PartnerApiResource
from integration_patterns.defs.external_api.storage import QUARANTINE, RECORDS, ensure_tables
from integration_patterns.resources.postgres import PostgresResource

DEMO_FAULTS = {
    "rate_limit": 0.04,
    "rate_limit_date": 0.02,
    "server_error": 0.04,
    "revoke": 0.02,
    "slow": 0.02,
    "drop": 0.02,
}


def run_demo(
    instance: dg.DagsterInstance,
    base_url: str,
    *,
    source_name: str = "partner_api_demo",
    postgres: PostgresResource | None = None,
) -> str:
    """Fetch from the simulator at ``base_url`` through the assets; return a text report."""
    httpx.post(
        f"{base_url}/admin/config",
        json={
            "faults": DEMO_FAULTS,
            "malformed_rate": 0.1,
            "total_records": 200,
            "slow_seconds": 2.0,
            "retry_after_seconds": 1,
        },
        timeout=5.0,
    ).raise_for_status()
    postgres = postgres or PostgresResource.from_env()
    partner_api = PartnerApiResource.from_env(
        base_url=base_url,
        read_timeout=1.0,
        backoff_base=0.1,
        backoff_cap=1.0,
        source_name=source_name,
    )
    defs = dg.Definitions(
        assets=[partner_records_raw, partner_records],
        jobs=[partner_records_job],
        resources={"partner_api": partner_api, "postgres": postgres},
    )
    result = defs.resolve_job_def(partner_records_job.name).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={
            "ops": {"partner_records_raw": {"config": {"full_refresh": True, "page_size": 20}}}
        },
    )
    lines = [
        f"external API demo: run {result.run_id} {'succeeded' if result.success else 'FAILED'}"
    ]
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        values = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        keep = (
            "records pages api_version retries rate_limited_429 reauthentications "
            "latency_p50_ms latency_p95_ms fetched inserted updated unchanged quarantined "
            "high_water_mark"
        ).split()
        shown = ", ".join(f"{k}={values[k]}" for k in keep if k in values)
        lines.append(f"  {mat.asset_key.to_user_string()}: {shown}")
    for check in result.get_asset_check_evaluations():
        if check.check_name == QUARANTINE_CHECK:
            rate = check.metadata["quarantine_rate"].value
            verdict = "passed" if check.passed else "FAILED"
            lines.append(f"  check {check.check_name}: {verdict} (rate {rate})")
    with postgres.get_connection() as conn:
        ensure_tables(conn)
        stored = conn.execute(
            f"SELECT id, name, value, timestamp FROM {RECORDS} WHERE source = %s "  # type: ignore[arg-type]
            "ORDER BY timestamp DESC LIMIT 5",
            (source_name,),
        ).fetchall()
        count = conn.execute(
            f"SELECT count(*) FROM {RECORDS} WHERE source = %s",  # type: ignore[arg-type]
            (source_name,),
        ).fetchone()
        held = conn.execute(
            "SELECT coalesce(external_id, payload->>'display_name', '?'), reason "  # type: ignore[arg-type]
            f"FROM {QUARANTINE} "
            "WHERE source = %s ORDER BY external_id NULLS FIRST",
            (source_name,),
        ).fetchall()
    lines.append(f"arrived: {count[0] if count else 0} records in {RECORDS}; newest:")
    lines += [f"  {r[0]}  {r[1]:<14} {r[2]:>8.2f}  {r[3].isoformat()}" for r in stored]
    lines.append(f"quarantined: {len(held)} items in {QUARANTINE}:")
    lines += [f"  {label:<14} {reason}" for label, reason in held[:15]]
    if len(held) > 15:
        lines.append(f"  ... and {len(held) - 15} more")
    return "\n".join(lines)
