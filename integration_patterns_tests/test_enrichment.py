"""Customer enrichment against the real PostgreSQL and MongoDB-wire servers.

Every test works in its own PostgreSQL schema and MongoDB collection (named from the
``unique`` fixture) and drops them afterwards, so it neither sees nor harms other tests.
What is asserted: the score and the id normalisation, exact results on hand-made data, the
mess in the seeded data counted in metadata, the all-or-nothing upsert's counts, that a
second run is a no-op, that a backfill in any order keeps the newest partition, the daily
schedule, and the pool-health verdicts.
"""

import datetime as dt
from decimal import Decimal

import dagster as dg
import pandas as pd
import pytest
from psycopg import sql

from devstack import sample_data
from devstack.enrichment_defs import enrichment_definitions
from integration_patterns.defs.enrichment import assets
from integration_patterns.defs.enrichment import enrich as scoring
from integration_patterns.defs.enrichment.pool_health import pool_problems
from integration_patterns.defs.enrichment.schedule import (
    customer_enrichment_daily,
)
from integration_patterns.defs.enrichment.store import EnrichmentStore
from integration_patterns.defs.enrichment.upsert import TABLE, upsert

END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PARTITION = "2026-01-31"  # its 30-day window is [2026-01-02, 2026-02-01)
IN_WINDOW = dt.datetime(2026, 1, 20, 12, tzinfo=dt.UTC)
BEFORE_WINDOW = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


def enrichment_defs(store: EnrichmentStore, **resource_overrides) -> dg.Definitions:
    """Just the enrichment (not the whole code location), pointed at the test's store."""
    return enrichment_definitions(
        store, schedules=[customer_enrichment_daily], **resource_overrides
    )


def run_job(store: EnrichmentStore, partition: str = PARTITION, **overrides):
    job = enrichment_defs(store, **overrides).resolve_job_def("customer_enrichment")
    return job.execute_in_process(partition_key=partition)


def materialization(result, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def table_rows(postgres, store: EnrichmentStore) -> list[tuple]:
    return postgres.fetch_all(
        sql.SQL("SELECT * FROM {} ORDER BY customer_id").format(store.table(TABLE))
    )


def write_sources(postgres, mongo, store, customers, orders, events) -> None:
    """Hand-made source rows through the seeder's own DDL."""
    with postgres.get_connection() as conn:
        for statement in sample_data.source_ddl(store.schema_name):
            conn.execute(statement)
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (customer_id, name, email, signed_up_at) "
                    "VALUES (%s, %s, %s, %s)"
                ).format(store.table("customers")),
                [(*c, BEFORE_WINDOW) for c in customers],
            )
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (customer_id, amount, ordered_at) VALUES (%s, %s, %s)"
                ).format(store.table("orders")),
                orders,
            )
    if events:
        mongo.db()[store.events_collection].insert_many(events)


# --- pure logic -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42", 42),  # the common case: Postgres int stored as a Mongo string
        (" 0042 ", 42),  # padded and zero-filled: the same customer
        (42, 42),  # an int that slipped in as an int
        (None, None),  # no user at all
        ("", None),  # empty string
        ("guest-7", None),  # not an id
        ("0", None),  # ids start at 1
        (True, None),  # a bool is not an id although Python calls it an int
        ("9" * 19, None),  # would overflow bigint
        (4.0, None),  # floats are not ids
    ],
)
def test_user_ids_normalise_to_postgres_integers(raw, expected):
    assert scoring.normalise_user_id(raw) == expected


@pytest.mark.parametrize(
    ("orders", "events", "score"),
    [
        (0, 0, 0),  # inactive
        (1, 3, 16),  # 10 + 6
        (5, 25, 100),  # exactly the cap
        (20, 500, 100),  # capped
    ],
)
def test_engagement_score_is_capped_at_100(orders, events, score):
    result = scoring.engagement_score(pd.Series([orders]), pd.Series([events]))
    assert result.tolist() == [score]


def test_blocking_data_checks_fail_on_bad_scores_and_ambiguous_ids():
    bad = pd.DataFrame({"customer_id": [1, 2, 2, None], "engagement_score": [50, 101, -1, None]})
    score = assets.score_in_range(bad)
    ids = assets.one_row_per_customer(bad)
    assert not score.passed and score.metadata["rows_out_of_range"].value == 3
    assert not ids.passed and ids.metadata["duplicate_or_null_ids"].value == 2
    good = pd.DataFrame({"customer_id": [1, 2], "engagement_score": [0, 100]})
    assert assets.score_in_range(good).passed and assets.one_row_per_customer(good).passed


# --- end to end on hand-made data ---------------------------------------------------------


def test_hand_made_sources_give_exact_scores(postgres, mongo, store):
    write_sources(
        postgres,
        mongo,
        store,
        customers=[
            (1, "Ada", "ada@example.com"),
            (2, "Old Alan", "old@example.com"),
            (2, "Alan", "alan@example.com"),  # re-imported: the later row wins
            (3, "Grace", None),  # no orders, no events
            (None, "Nobody", None),  # no id: not a customer
        ],
        orders=[
            (1, Decimal("10.50"), IN_WINDOW),
            (1, Decimal("20.00"), IN_WINDOW),
            (1, Decimal("99.00"), BEFORE_WINDOW),  # outside the window
            (2, Decimal("5.25"), IN_WINDOW),
            (77, Decimal("1.00"), IN_WINDOW),  # unknown customer
            (None, Decimal("2.00"), IN_WINDOW),  # no customer
        ],
        events=[
            *({"user_id": "1", "timestamp": IN_WINDOW} for _ in range(50)),
            {"user_id": " 002", "timestamp": IN_WINDOW},  # padded id of customer 2
            {"user_id": "2", "timestamp": IN_WINDOW + dt.timedelta(hours=1)},
            {"user_id": "2", "timestamp": BEFORE_WINDOW},  # outside the window
            {"user_id": "99", "timestamp": IN_WINDOW},  # unknown user
            {"user_id": "guest-1", "timestamp": IN_WINDOW},  # not an id
            {"timestamp": IN_WINDOW},  # no user_id at all
        ],
    )
    result = run_job(store)
    assert result.success
    rows = {r[0]: r for r in table_rows(postgres, store)}
    assert sorted(rows) == [1, 2, 3]
    # (id, name, email, orders, spent, events, last event, score, partition)
    assert rows[1][3:6] == (2, Decimal("30.50"), 50) and rows[1][7] == 100
    assert rows[2][1] == "Alan" and rows[2][3:6] == (1, Decimal("5.25"), 2)
    assert rows[2][6] == IN_WINDOW + dt.timedelta(hours=1)
    assert rows[2][7] == 14  # 1 order * 10 + 2 events * 2
    assert rows[3][3:8] == (0, Decimal("0.00"), 0, None, 0)
    assert {r[8] for r in rows.values()} == {dt.date(2026, 1, 31)}

    source = materialization(result, "customers")
    assert source["null_customer_ids"] == 1
    assert source["duplicate_customer_rows"] == 1
    assert source["orders_unknown_customer"] == 1
    assert source["orders_without_customer"] == 1
    enriched = materialization(result, "enriched_customers")
    assert enriched["merged_user_ids"] == 1  # " 002" and "2"
    assert enriched["unknown_users"] == 1 and enriched["unknown_user_events"] == 1
    assert enriched["invalid_user_id_events"] == 2  # "guest-1" and the missing user_id
    assert enriched["customers_without_events"] == 1
    assert checks(result) == {
        "score_in_range": True,
        "one_row_per_customer": True,
        "reconciles_with_enriched": True,
        "postgres_pool_healthy": True,
    }


def test_limit_bounds_both_source_reads(postgres, mongo, store):
    write_sources(
        postgres,
        mongo,
        store,
        customers=[(i, f"C{i}", None) for i in range(1, 6)],
        orders=[(i, Decimal(i), IN_WINDOW) for i in range(1, 6)],
        events=[{"user_id": str(i), "timestamp": IN_WINDOW} for i in range(1, 6)],
    )
    job = enrichment_defs(store).resolve_job_def("customer_enrichment")
    result = job.execute_in_process(
        partition_key=PARTITION,
        run_config={"ops": {n: {"config": {"limit": 2}} for n in ("customers", "user_events")}},
    )
    assert result.success
    # The two biggest spenders, and the limit as a bound parameter rather than SQL text.
    assert [r[0] for r in table_rows(postgres, store)] == [4, 5]
    assert materialization(result, "user_events")["dagster/row_count"] == 2


# --- seeded data: determinism, mess, idempotence, backfill ---------------------------------


def test_seeding_is_deterministic_and_carries_the_mess(postgres, mongo, store):
    volume = sample_data.Volume(customers=300, orders=2_000, events=3_000)

    def seeded() -> tuple:
        """Everything the seeder wrote, in a stable order."""
        customers = "SELECT customer_id, name, email, signed_up_at FROM {} ORDER BY row_id"
        orders = "SELECT customer_id, amount, ordered_at FROM {} ORDER BY order_id"
        return (
            postgres.fetch_all(sql.SQL(customers).format(store.table("customers"))),
            postgres.fetch_all(sql.SQL(orders).format(store.table("orders"))),
            list(mongo.db()[store.events_collection].find({}, {"_id": 0}).sort("timestamp", 1)),
        )

    first = sample_data.seed(
        postgres,
        mongo,
        volume=volume,
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    snapshot = seeded()
    second = sample_data.seed(
        postgres,
        mongo,
        volume=volume,
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    again = seeded()
    assert snapshot == again  # same seed, same end: same data (and reseeding replaces)
    assert {**vars(first), "seconds": 0} == {**vars(second), "seconds": 0}
    assert len(snapshot[0]) == first.customers_rows
    assert len(snapshot[2]) == volume.events
    assert first.duplicate_customer_rows > 0 and first.null_customer_ids > 0
    assert first.orders_unknown_customer > 0 and first.events_unknown_user > 0
    assert first.events_padded_id > 0 and first.events_invalid_id > 0
    assert all(isinstance(d["timestamp"], dt.datetime) for d in snapshot[2])  # BSON dates
    assert all(isinstance(d.get("user_id", ""), str | None) for d in snapshot[2])


def test_second_run_of_a_partition_leaves_the_table_identical(postgres, mongo, store):
    sample_data.seed(
        postgres,
        mongo,
        volume=sample_data.PRESETS["small"],
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    first = run_job(store)
    assert first.success
    before = table_rows(postgres, store)
    meta = materialization(first, "customer_analytics")
    assert meta["rows_inserted"] == 200 == len(before)  # 200 distinct non-NULL ids
    assert meta["rows_updated"] == 0 and meta["rows_per_second"] > 0
    assert "postgres_pool" in meta and "mongo_pool" in materialization(first, "user_events")
    assert all(checks(first).values()), checks(first)

    second = run_job(store)
    assert second.success
    assert table_rows(postgres, store) == before
    again = materialization(second, "customer_analytics")
    assert (again["rows_inserted"], again["rows_updated"], again["rows_unchanged"]) == (
        0,
        0,
        200,
    )


def test_backfill_in_any_order_keeps_the_newest_partition(postgres, mongo, store):
    sample_data.seed(
        postgres,
        mongo,
        volume=sample_data.Volume(customers=60, orders=600, events=900),
        schema=store.schema_name,
        collection=store.events_collection,
        end=END,
    )
    # The newest partition first, then an older one: the older must not overwrite it.
    assert run_job(store, "2026-01-31").success
    newest = table_rows(postgres, store)
    older = run_job(store, "2026-01-20")
    assert older.success
    meta = materialization(older, "customer_analytics")
    assert meta["rows_kept_newer"] == 60 and meta["rows_updated"] == 0
    assert table_rows(postgres, store) == newest
    assert checks(older)["reconciles_with_enriched"]


# --- upsert counts --------------------------------------------------------------------------


def frame_of(ids, score=10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": list(ids),
            "name": [f"C{i}" for i in ids],
            "email": [None for _ in ids],
            "order_count": [1 for _ in ids],
            "total_spent": [Decimal("1.00") for _ in ids],
            "event_count": [0 for _ in ids],
            "last_event_at": [pd.NaT for _ in ids],
            "engagement_score": [score for _ in ids],
        }
    )


def test_upsert_counts_inserted_updated_and_unchanged(postgres, store):
    day = dt.date(2026, 1, 31)
    first = upsert(postgres, store.schema_name, frame_of(range(1, 11)), partition_date=day)
    assert (first.inserted, first.updated, first.unchanged) == (10, 0, 0)
    batch = pd.concat([frame_of(range(1, 6), score=10), frame_of(range(6, 16), score=20)])
    second = upsert(postgres, store.schema_name, batch, partition_date=day)
    # 1-5 identical, 6-10 changed score, 11-15 new.
    assert (second.inserted, second.updated, second.unchanged) == (5, 5, 5)
    assert second.matching_after == second.staged == 15 and second.reconciled
    scores = dict(
        postgres.fetch_all(
            sql.SQL("SELECT customer_id, engagement_score FROM {}").format(store.table(TABLE))
        )
    )
    assert scores == {i: 10 if i <= 5 else 20 for i in range(1, 16)}


# --- schedule, definitions and pool health -------------------------------------------------


def _schedule_tick(store, postgres):
    defs = enrichment_defs(store)
    schedule = defs.resolve_schedule_def("customer_enrichment_daily")
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(
            instance=instance,
            repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC),
            resources={"postgres": postgres, "enrichment_store": store},
        ) as context:
            return schedule, schedule.evaluate_tick(context)


def test_schedule_runs_daily_at_two_utc_for_the_previous_day(store, postgres):
    with postgres.get_connection() as conn:
        for statement in sample_data.source_ddl(store.schema_name):
            conn.execute(statement)
    schedule, data = _schedule_tick(store, postgres)
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "customer_enrichment"
    assert [r.partition_key for r in data.run_requests or []] == ["2026-02-28"]


def test_first_tick_on_a_fresh_setup_skips_naming_the_missing_tables(store, postgres):
    _schedule, data = _schedule_tick(store, postgres)  # nothing seeded: no source tables
    assert not data.run_requests
    assert f"{store.schema_name}.customers" in data.skip_message
    assert "make seed" in data.skip_message


def test_assets_declare_group_kinds_and_pools():
    specs = {
        spec.key.to_user_string(): spec
        for a in (
            assets.customers,
            assets.user_events,
            assets.enriched_customers,
            assets.customer_analytics,
        )
        for spec in a.specs
    }
    assert {s.group_name for s in specs.values()} == {"enrichment"}
    assert specs["customers"].kinds >= {"postgres"}
    assert specs["user_events"].kinds >= {"mongodb"}
    assert assets.customers.op.pool == "postgres"
    assert assets.user_events.op.pool == "mongodb"
    assert assets.customer_analytics.op.pool == "postgres"


@pytest.mark.parametrize(
    ("stats", "fragment"),
    [
        ({"queries_executed": 100, "query_errors": 6, "error_rate": 0.06}, "error rate 6.0%"),
        ({"requests_queued": 3, "requests_wait_ms": 120}, "3 request(s) waited"),
        ({"requests_waiting": 1}, "1 waiting now"),
        ({"requests_errors": 2}, "pool exhausted"),
    ],
)
def test_pool_health_flags_errors_waits_and_exhaustion(stats, fragment):
    problems = pool_problems({"pool_max": 4, **stats})
    assert any(fragment in p for p in problems), problems


def test_pool_health_accepts_a_quiet_pool_at_the_threshold():
    assert pool_problems({"queries_executed": 100, "query_errors": 5, "error_rate": 0.05}) == []


def test_code_location_loads_the_enrichment_with_its_store():
    from integration_patterns.definitions import defs

    loaded = defs()
    assert isinstance((loaded.resources or {}).get("enrichment_store"), EnrichmentStore)
    job = loaded.resolve_job_def("customer_enrichment")
    assert {n.name for n in job.nodes} >= {"customers", "user_events", "customer_analytics"}
    schedule = loaded.resolve_schedule_def("customer_enrichment_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_demo_section_seeds_runs_and_lists_the_top_ten():
    from devstack.demo_enrichment import run_demo

    text = run_demo(dg.DagsterInstance.ephemeral())
    lines = text.splitlines()
    assert ": success" in lines[0]
    assert "analytics upsert:" in text
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("id"))
    top = lines[header + 1 :]
    assert len(top) == 10
    scores = [int(line.split()[-1]) for line in top]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 100 for s in scores)
