"""The code location loads as Dagster loads it, and holds its resources and jobs.

If an import, a resource wiring or a name collision breaks, every UI launch and schedule of
the location breaks with it; this is the cheapest place to find out.
"""

import subprocess

import dagster as dg
import pytest

from integration_patterns.definitions import defs
from integration_patterns.resources.kafka import KafkaResource
from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.resources.rabbitmq import RabbitMQResource
from integration_patterns_tests.conftest import PROJECT


def test_definitions_hold_one_resource_per_external_system():
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    resources = loaded.resources or {}
    expected = {
        "postgres": PostgresResource,
        "mongo": MongoResource,
        "kafka": KafkaResource,
        "rabbitmq": RabbitMQResource,
    }
    for key, cls in expected.items():
        assert isinstance(resources.get(key), cls), key


def test_platform_job_and_asset_are_defined():
    loaded = defs()
    assert loaded.resolve_job_def("platform_smoke") is not None
    assert (
        loaded.resolve_assets_def("service_health").group_names_by_key[
            dg.AssetKey("service_health")
        ]
        == "platform"
    )


def test_dg_check_defs_passes_from_the_cli():
    # The same check `dg dev` and deployments run: it loads the project through pyproject.
    result = subprocess.run(
        ["dg", "check", "defs"], cwd=PROJECT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


# --- the inventory: everything the location loads, by name, with its default status ------

# Declared external systems (dg.AssetSpec, written outside Dagster or by an op job) and the
# assets Dagster materializes. A dropped, renamed or added asset fails here first.
EXTERNAL_ASSETS = {
    # external_api/external.py
    "partner_api",
    # enrichment/external.py
    "postgres_customers",
    "postgres_orders",
    "mongo_user_events",
    # webhooks/external.py
    "shop_webhooks",
    "stripe_webhooks",
    "github_webhooks",
    "svix_webhooks",
    "webhook_inbox",
    # messaging/external.py
    "kafka_orders_topic",
    "orders_results_exchange",
    "orders_dead_letter_exchange",
    "orders_results_queue",
    "orders_dead_letter_queue",
    "orders_parking_queue",
}
MATERIALIZED_ASSETS = {
    "service_health",
    "partner_records_raw",
    "partner_records",
    "customers",
    "user_events",
    "enriched_customers",
    "customer_analytics",
    "webhook_orders",
    "webhook_payments",
    "webhook_users",
    "webhook_github_pushes",
    "webhook_github_pull_requests",
    "webhook_github_issues",
    "webhook_unknown_events",
    "order_results",
}
WEBHOOK_ROUTE_ASSETS = {a for a in MATERIALIZED_ASSETS if a.startswith("webhook_")}
ASSET_CHECKS = {
    ("partner_records", "quarantine_rate_within_threshold"),
    ("enriched_customers", "score_in_range"),
    ("enriched_customers", "one_row_per_customer"),
    ("customer_analytics", "reconciles_with_enriched"),
    ("customer_analytics", "postgres_pool_healthy"),
} | {(a, c) for a in WEBHOOK_ROUTE_ASSETS for c in ("backlog_flowing", "no_failed_events")}
JOBS = {
    "platform_smoke",
    "partner_records_fetch",
    "customer_enrichment",
    "customer_enrichment_celery",
    "kafka_orders_batch",
    "order_results_drain",
    "orders_dead_letter_redrive",
    "webhook_batch_job",
    "webhook_replay_job",
}
RUNNING = dg.DefaultSensorStatus.RUNNING
SENSORS = {
    "kafka_orders_sensor": RUNNING,
    "webhook_inbox_router": RUNNING,
    "alert_on_run_failure": RUNNING,
    "operations_monitors": RUNNING,
}
SCHEDULES = {
    "partner_records_hourly": dg.DefaultScheduleStatus.RUNNING,
    "customer_enrichment_daily": dg.DefaultScheduleStatus.RUNNING,
    "order_results_every_10_minutes": dg.DefaultScheduleStatus.RUNNING,
}

# Each pattern's lineage, from where its data comes from to where it lands: every source
# must reach every sink of its pattern through declared deps.
FLOWS = {
    "external_api": ({"partner_api"}, {"partner_records"}),
    "enrichment": (
        {"postgres_customers", "postgres_orders", "mongo_user_events"},
        {"customer_analytics"},
    ),
    "webhooks": (
        {"shop_webhooks", "stripe_webhooks", "github_webhooks", "svix_webhooks"},
        WEBHOOK_ROUTE_ASSETS,
    ),
    "messaging": ({"kafka_orders_topic"}, {"order_results", "orders_parking_queue"}),
}


@pytest.fixture(scope="module")
def loaded() -> dg.Definitions:
    return defs()


@pytest.fixture(scope="module")
def specs(loaded) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in loaded.resolve_all_asset_specs()}


def downstream(specs: dict[str, dg.AssetSpec], start: str) -> set[str]:
    """Every asset reachable from ``start`` by following deps forwards."""
    children: dict[str, set[str]] = {}
    for name, spec in specs.items():
        for dep in spec.deps:
            children.setdefault(dep.asset_key.to_user_string(), set()).add(name)
    seen, todo = set(), [start]
    while todo:
        for child in children.get(todo.pop(), set()) - seen:
            seen.add(child)
            todo.append(child)
    return seen


def test_the_asset_graph_holds_exactly_the_expected_assets(loaded, specs):
    assert set(specs) == EXTERNAL_ASSETS | MATERIALIZED_ASSETS
    graph = loaded.resolve_asset_graph()
    external = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_external}
    assert external == EXTERNAL_ASSETS


def test_every_asset_check_is_listed_and_described(loaded):
    graph = loaded.resolve_asset_graph()
    found = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert found == ASSET_CHECKS
    undescribed = [k for k in graph.asset_check_keys if not graph.get_check_spec(k).description]
    assert not undescribed, f"asset checks without a description: {undescribed}"


def test_every_job_sensor_and_schedule_is_listed_with_its_default_status(loaded):
    repository = loaded.get_repository_def()
    jobs = {job.name for job in loaded.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == JOBS
    sensors = {s.name: s.default_status for s in repository.sensor_defs}
    assert sensors == SENSORS
    schedules = {s.name: s.default_status for s in repository.schedule_defs}
    assert schedules == SCHEDULES


def test_every_asset_has_an_owner_a_kind_a_group_and_a_description(specs):
    for name, spec in specs.items():
        assert spec.owners and all(o.startswith("team:") for o in spec.owners), name
        assert spec.kinds, name
        assert spec.group_name and spec.group_name != "default", name
        assert spec.description, name


@pytest.mark.parametrize("pattern", sorted(FLOWS))
def test_every_source_of_a_pattern_reaches_its_sinks(specs, pattern):
    sources, sinks = FLOWS[pattern]
    for source in sources:
        assert not specs[source].deps, f"{source} is a source: nothing feeds it"
        missing = sinks - downstream(specs, source)
        assert not missing, f"{pattern}: {source} does not reach {missing}"


def test_the_lineage_check_can_fail(specs):
    # Remove one edge: the source no longer reaches the sink.
    cut = dict(specs)
    cut["partner_records_raw"] = specs["partner_records_raw"].replace_attributes(deps=[])
    assert "partner_records" not in downstream(cut, "partner_api")
    assert "partner_records" in downstream(specs, "partner_api")
