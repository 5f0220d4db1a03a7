"""The code location loads as Dagster loads it, and holds its resources and jobs.

If an import, a resource wiring or a name collision breaks, every UI launch and schedule of
the location breaks with it; this is the cheapest place to find out.
"""

import subprocess

import dagster as dg

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
