"""Loading the code location imports only what loading needs.

Every run worker, step process and code server imports the location before it does any
work, so a client library imported at module level is paid by every run of every job, also
by the jobs that never use it (pandas alone is about 1.5 s of a 2-core machine). The rule:
import client libraries inside the functions that use them. This test loads the definitions
the way a run worker does, in a fresh interpreter, and fails naming any module on the list
below that the load pulled in. How long the load takes is measured by
``make bench BENCH=run_latency``, not asserted here (timings on a shared machine are noise).
"""

import json
import subprocess
import sys

import dagster as dg
import pytest

from integration_patterns.definitions import defs
from integration_patterns_tests.conftest import PROJECT

# Modules a job that does not use them must not pay for, and why each is here.
FORBIDDEN = {
    "pandas": "only the enrichment steps use it",
    "numpy": "only the enrichment steps use it (through pandas)",
    "pymongo": "only steps that talk to MongoDB use it",
    "pika": "only steps that talk to RabbitMQ use it",
    "psycopg": "only steps and sensor ticks that query PostgreSQL use it",
    "psycopg_pool": "only a PostgresResource that opens its pool uses it",
    "httpx": "only the partner-API client and the alert sinks use it",
    "rich": "httpx's command line imports it (with pygments)",
    "pygments": "httpx's command line imports it (through rich)",
    "fastapi": "the ASGI services run outside Dagster",
    "starlette": "the ASGI services run outside Dagster",
    "uvicorn": "the ASGI services run outside Dagster",
    "jwt": "only the gateway checks tokens",
    "integration_patterns.services": "the receiver and the gateway are not the code location",
    "devstack": "development tooling is not the code location",
    "dagster_aws.components": "the component catalogue of load_from_defs_folder's root",
}

_LOAD = """
import json, sys
import integration_patterns.definitions as entry
repository = entry.defs().get_repository_def()
jobs = sorted(job.name for job in repository.get_all_jobs())
json.dump({"jobs": jobs, "modules": sorted(sys.modules)}, sys.stdout)
"""


def _load_in_fresh_interpreter() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD], cwd=PROJECT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _offenders(modules: list[str]) -> dict[str, str]:
    return {
        name: why
        for name, why in FORBIDDEN.items()
        if any(m == name or m.startswith(name + ".") for m in modules)
    }


def test_loading_the_definitions_imports_no_module_it_does_not_need():
    loaded = _load_in_fresh_interpreter()
    assert "platform_smoke" in loaded["jobs"]  # the location really loaded
    offenders = _offenders(loaded["modules"])
    assert not offenders, (
        f"loading the code location imported {offenders}; import client libraries inside "
        "the functions that use them (find the importer with `python -X importtime -c "
        "'import integration_patterns.definitions as d; d.defs()'`)"
    )


def test_the_offender_check_names_a_forbidden_module_and_its_submodules():
    # The check itself must be able to fail: a submodule counts as its package.
    assert _offenders(["dagster", "pandas.core.frame"]) == {"pandas": FORBIDDEN["pandas"]}
    assert _offenders(["dagster", "pandasql"]) == {}


# Short, sequential jobs run their steps in the run worker: Dagster's default multiprocess
# executor starts a process per step, and each one loads the code location again.
IN_PROCESS_JOBS = [
    "platform_smoke",  # one probe step
    "partner_records_fetch",  # two steps, one after the other
    "customer_enrichment",  # reads aggregate in their databases; join and write follow
    "kafka_orders_batch",  # one op streaming a range
    "webhook_batch_job",  # a step per route in the batch, one after the other
]


@pytest.mark.parametrize("job_name", IN_PROCESS_JOBS)
def test_short_sequential_jobs_run_in_process(job_name):
    job = defs().resolve_job_def(job_name)
    assert job.executor_def.name == dg.in_process_executor.name
