"""The enrichment's four assets: two source reads, the join, and the transactional write.

Each daily partition scores the activity of the ``lookback_days`` ending with that day. The
reads aggregate in their databases; the join and the score run in pandas; the write is one
transaction (see ``upsert.py``). Data checks on ``enriched_customers`` are blocking, so a
batch with bad scores or ambiguous ids never reaches the table. They run inside the asset's
own step, on the partition it just computed: a separate ``@asset_check`` on a partitioned
asset needs a partitioned check spec, which Dagster 1.13 still ships as a preview.

The frames are pandas DataFrames, but no signature here names ``pd.DataFrame``: Dagster
resolves annotations when the location loads, and every run of every job would import
pandas (about 1.5 s) for them. The modules these assets call import it when they run.
"""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from integration_patterns.defs.enrichment import enrich as scoring
from integration_patterns.defs.enrichment.external import (
    GROUP,
    mongo_user_events,
    postgres_customers,
    postgres_orders,
)
from integration_patterns.defs.enrichment.pool_health import (
    POSTGRES_POOL_CHECK,
    mongo_pool_metadata,
    postgres_pool_check,
    postgres_pool_metadata,
)
from integration_patterns.defs.enrichment.queries import fetch_customers, fetch_user_events
from integration_patterns.defs.enrichment.store import ActivityWindow, EnrichmentStore
from integration_patterns.defs.enrichment.upsert import TABLE, upsert
from integration_patterns.defs.owners import INTEGRATIONS
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.transient import TRANSIENT_RETRY_POLICY, retry_transient

ENRICHMENT_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")


class SourceLimit(dg.Config):
    """Optional cap on the rows a source read returns (for sampling and tests)."""

    limit: int | None = Field(
        default=None, ge=1, description="Most rows to read; None reads every customer/user."
    )


def _window_metadata(window: ActivityWindow) -> dict[str, str]:
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    partitions_def=ENRICHMENT_PARTITIONS,
    pool="postgres",
    deps=[postgres_customers, postgres_orders],
    owners=INTEGRATIONS,
)
def customers(
    context: dg.AssetExecutionContext,
    config: SourceLimit,
    postgres: PostgresResource,
    enrichment_store: EnrichmentStore,
) -> dg.MaterializeResult:
    """Per customer id: name, email, orders and total spent in the activity window."""
    window = enrichment_store.window(context.partition_time_window)
    frame, quality = fetch_customers(postgres, enrichment_store, window, limit=config.limit)
    context.log.info(f"{len(frame)} customers, source mess: {quality}")
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "dagster/row_count": len(frame),
            "customers_with_orders": scoring.total(frame["order_count"] > 0),
            **quality,
            **_window_metadata(window),
            **postgres_pool_metadata(postgres),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mongodb", "pandas"},
    partitions_def=ENRICHMENT_PARTITIONS,
    pool="mongodb",
    deps=[mongo_user_events],
    owners=INTEGRATIONS,
)
def user_events(
    context: dg.AssetExecutionContext,
    config: SourceLimit,
    mongo: MongoResource,
    enrichment_store: EnrichmentStore,
) -> dg.MaterializeResult:
    """Per raw MongoDB user id: events in the activity window and the last event's time."""
    window = enrichment_store.window(context.partition_time_window)
    frame = fetch_user_events(mongo, enrichment_store, window, limit=config.limit)
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "dagster/row_count": len(frame),
            "events": scoring.total(frame["event_count"]),
            **_window_metadata(window),
            **mongo_pool_metadata(mongo),
        },
    )


def score_in_range(frame) -> dg.AssetCheckResult:
    """Every engagement score is within 0..100 (blocking: bad scores never reach the table)."""
    bad = scoring.scores_out_of_range(frame)
    return dg.AssetCheckResult(
        check_name="score_in_range", passed=bad == 0, metadata={"rows_out_of_range": bad}
    )


def one_row_per_customer(frame) -> dg.AssetCheckResult:
    """No NULL and no repeated customer id (blocking: the upsert key must be unambiguous)."""
    bad = scoring.duplicate_or_missing_ids(frame)
    return dg.AssetCheckResult(
        check_name="one_row_per_customer",
        passed=bad == 0,
        metadata={"duplicate_or_null_ids": bad},
    )


DATA_CHECKS = (score_in_range, one_row_per_customer)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    partitions_def=ENRICHMENT_PARTITIONS,
    owners=INTEGRATIONS,
    check_specs=[
        dg.AssetCheckSpec(
            check.__name__,
            asset="enriched_customers",
            blocking=True,
            description=(check.__doc__ or "").strip(),
        )
        for check in DATA_CHECKS
    ],
)
def enriched_customers(
    context: dg.AssetExecutionContext, customers, user_events
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Customers joined with their events on normalised ids, with the engagement score."""
    frame, counts = scoring.enrich(customers, user_events)
    context.log.info(f"{len(frame)} enriched customers; {counts}")
    yield dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            **counts,
            "top_customers": dg.MetadataValue.md(scoring.top(frame).to_markdown(index=False)),
        },
    )
    # A failed blocking check fails this step after it is recorded, so the upsert
    # downstream never runs on the batch.
    for check in DATA_CHECKS:
        yield check(frame)


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    partitions_def=ENRICHMENT_PARTITIONS,
    pool="postgres",
    owners=INTEGRATIONS,
    check_specs=[
        dg.AssetCheckSpec(
            "reconciles_with_enriched",
            asset="customer_analytics",
            description=(
                "Every enriched row was staged and is in the table at this partition "
                "(or kept at a newer one)."
            ),
        ),
        dg.AssetCheckSpec(
            POSTGRES_POOL_CHECK,
            asset="customer_analytics",
            description=(
                "Warns when the PostgreSQL pool made requests wait, timed out or saw more "
                "than 5% query errors."
            ),
        ),
    ],
    # A lost connection or a restarting server: the upsert is one transaction that rolled
    # back, so it is retried with backoff. Bad data fails at once.
    retry_policy=TRANSIENT_RETRY_POLICY,
)
@retry_transient
def customer_analytics(
    context: dg.AssetExecutionContext,
    enriched_customers,
    postgres: PostgresResource,
    enrichment_store: EnrichmentStore,
) -> dg.MaterializeResult:
    """The scored customers in PostgreSQL, upserted in one all-or-nothing transaction."""
    window = enrichment_store.window(context.partition_time_window)
    result = upsert(
        postgres,
        enrichment_store.schema_name,
        enriched_customers,
        partition_date=window.partition_date,
    )
    context.log.info(
        f"upserted {result.staged} rows: {result.inserted} inserted, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.kept_newer} kept (newer partition present)"
    )
    return dg.MaterializeResult(
        metadata={
            "table": f"{enrichment_store.schema_name}.{TABLE}",
            "rows_inserted": result.inserted,
            "rows_updated": result.updated,
            "rows_unchanged": result.unchanged,
            "rows_kept_newer": result.kept_newer,
            "duration_s": result.seconds,
            "rows_per_second": result.rows_per_second,
            **postgres_pool_metadata(postgres),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="reconciles_with_enriched",
                passed=result.reconciled,
                metadata={
                    "enriched_rows": len(enriched_customers),
                    "rows_staged": result.staged,
                    "rows_in_table_at_partition": result.matching_after,
                    "rows_kept_newer": result.kept_newer,
                },
            ),
            postgres_pool_check(postgres),
        ],
    )
