"""Partner records: fetched incrementally from the partner API, validated, upserted.

``partner_records_raw`` pages through ``/v2/data`` from the high-water mark stored in
PostgreSQL (inclusive, so a record sharing the mark's timestamp is never skipped; the
upsert absorbs the one it fetches again). ``partner_records`` maps the items to the
internal schema, upserts the valid ones, quarantines the rest with the reason and moves the
mark, all in one transaction. Its check fails when the quarantine rate of the batch passes
a threshold. The job runs hourly.

The fetch runs in the ``partner_api`` concurrency pool: the client's request budget is per
process, so allowing one fetching run at a time (the pool's limit) keeps the whole
deployment inside the partner's limit.
"""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from integration_patterns.defs.external_api.external import GROUP, partner_api
from integration_patterns.defs.external_api.resources import PartnerApiResource
from integration_patterns.defs.external_api.storage import (
    ensure_tables,
    read_watermark,
    store,
)
from integration_patterns.defs.external_api.transform import PartnerBatch, split
from integration_patterns.defs.owners import INTEGRATIONS
from integration_patterns.resources.postgres import PostgresResource

QUARANTINE_CHECK = "quarantine_rate_within_threshold"


class PartnerFetchConfig(dg.Config):
    """How to fetch."""

    page_size: int = Field(default=100, description="Records per page requested.")
    full_refresh: bool = Field(
        default=False, description="Ignore the high-water mark and fetch everything again."
    )


class PartnerLoadConfig(dg.Config):
    """How strict to be."""

    max_quarantine_rate: float = Field(
        default=0.05, description="The check fails when a larger share of a batch is malformed."
    )


def _record_circuit(context: dg.AssetExecutionContext, client: object) -> None:
    """Record the breaker's state durably (an observation), even when the fetch fails.

    The breaker lives in the run's process; the operations monitor reads this record to
    alert while the partner's circuit is open.
    """
    breaker = getattr(client, "breaker", None)
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={
                "circuit_state": breaker.state if breaker is not None else "none",
                "circuit_times_opened": breaker.times_opened if breaker is not None else 0,
            },
        )
    )


@dg.asset(
    group_name=GROUP,
    kinds={"api", "python"},
    pool="partner_api",
    deps=[partner_api],
    owners=INTEGRATIONS,
)
def partner_records_raw(
    context: dg.AssetExecutionContext,
    config: PartnerFetchConfig,
    partner_api: PartnerApiResource,
    postgres: PostgresResource,
) -> dg.Output[PartnerBatch]:
    """The partner's records as received, fetched since the stored high-water mark."""
    with postgres.get_connection() as conn:
        ensure_tables(conn)
        mark = None if config.full_refresh else read_watermark(conn, partner_api.source_name)
    params: dict[str, str | int] = {"limit": config.page_size}
    since = mark.astimezone(UTC).isoformat().replace("+00:00", "Z") if mark else None
    if since:
        params["since"] = since
    client = partner_api.get_client(log=context.log)
    items: list = []
    versions: set[str] = set()
    pages = 0
    try:
        for page in client.paginate("/v2/data", params=params):
            pages += 1
            items.extend(page.items)
            if isinstance(page.body, dict) and page.body.get("api_version"):
                versions.add(str(page.body["api_version"]))
    finally:
        _record_circuit(context, client)
    stats = client.stats.as_metadata()
    metadata: dict[str, dg.RawMetadataValue] = {
        "records": len(items),
        "pages": pages,
        "since": since or "(full fetch)",
        "api_version": ", ".join(sorted(versions)) or "unknown",
        "retries": stats["retries"],
        "rate_limited_429": stats["rate_limited"],
        "reauthentications": stats["reauthentications"],
        "http": dg.MetadataValue.json(stats),
        "latency_p50_ms": stats["latency_p50_ms"],
        "latency_p95_ms": stats["latency_p95_ms"],
    }
    batch = PartnerBatch(partner_api.source_name, since, sorted(versions), items, pages)
    return dg.Output(batch, metadata=metadata)


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    pool="postgres",
    owners=INTEGRATIONS,
    check_specs=[
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset="partner_records",
            description="The share of quarantined items in the batch stays under the limit.",
        )
    ],
)
def partner_records(
    context: dg.AssetExecutionContext,
    config: PartnerLoadConfig,
    postgres: PostgresResource,
    partner_records_raw: PartnerBatch,
) -> dg.MaterializeResult:
    """Partner records in the internal schema (id, name, value, timestamp, source).

    Valid records are upserted into ``partner_records``; malformed items go to
    ``partner_records_quarantine`` with the reason.
    """
    batch = partner_records_raw
    records, quarantined, duplicates = split(batch.items)
    with postgres.get_connection() as conn:
        ensure_tables(conn)
        result = store(conn, batch.source, records, quarantined)
    fetched = len(batch.items)
    rate = len(quarantined) / fetched if fetched else 0.0
    reasons = Counter(q.reason for q in quarantined)
    if quarantined:
        context.log.warning(f"quarantined {len(quarantined)} of {fetched} items: {dict(reasons)}")
    preview = "\n".join(
        ["| external_id | reason |", "|---|---|"]
        + [f"| {q.external_id or '(none)'} | {q.reason} |" for q in quarantined[:20]]
    )
    return dg.MaterializeResult(
        metadata={
            "source": batch.source,
            "fetched": fetched,
            "inserted": result.inserted,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "duplicates_in_batch": duplicates,
            "quarantined": len(quarantined),
            "quarantined_new": result.quarantined_new,
            "quarantine_reasons": dg.MetadataValue.json(dict(reasons)),
            "quarantine_preview": dg.MetadataValue.md(preview),
            "high_water_mark": _iso(result.high_water_mark),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=QUARANTINE_CHECK,
                passed=rate <= config.max_quarantine_rate,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "quarantine_rate": round(rate, 4),
                    "threshold": config.max_quarantine_rate,
                    "quarantined": len(quarantined),
                    "fetched": fetched,
                },
            )
        ],
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "(unchanged)"


partner_records_job = dg.define_asset_job(
    "partner_records_fetch",
    selection=dg.AssetSelection.assets(partner_records_raw, partner_records),
    description="Fetch new partner records since the high-water mark and upsert them.",
    # Two steps, strictly one after the other: nothing to run in parallel.
    executor_def=dg.in_process_executor,
)

partner_records_hourly = dg.ScheduleDefinition(
    name="partner_records_hourly",
    job=partner_records_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    # Runs as the README says: a fresh `make dev` fetches from the local simulator hourly.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Incremental partner fetch at the top of every hour.",
)
