"""Run latency: what this code location costs every run, against a minimal one-asset location.

Every run worker, step process and code server imports the code location before it works,
so the location's load time is paid per run. Two comparisons, both "minimal / ours" (1.0
means this location costs nothing over Dagster's own floor):

- "load vs minimal location": wall seconds of a fresh interpreter that imports the location
  and builds its repository (``defs().get_repository_def()``, every job resolved), ours
  (``integration_patterns.definitions``) and ``bench/minimal_location.py`` alternating,
  median of ``LOAD_REPETITIONS``; the CPU seconds of the same processes are in extra
  (steadier than wall seconds on a machine others are loading).
- "run latency vs minimal location (graphql|gateway)": wall seconds from the launch request
  to the run's success, ``platform_smoke`` (one step probing PostgreSQL, MongoDB, Kafka and
  RabbitMQ) against the minimal location's ``trivial`` job, both in-process. One Dagster
  stack (webserver + daemon, storage in its own database ``dagster_run_latency_bench``,
  sensors and schedules stopped) serves both locations; launched by a ``launchRun``
  mutation and polled every ``POLL_SECONDS``, and through one gateway per location with
  ``wait=true``. The four kinds alternate, ``RUN_REPETITIONS`` each, after one untimed warm-up.

Where a run's time goes comes from its own events (extra ``phases_*``: seconds from the
launch request, medians): enqueued by the webserver, worker launched (the daemon dequeued
it: the run queue is read every ``dequeue_interval_seconds``), run started (the run worker
process: interpreter, ``import dagster``, the code location), first step started,
succeeded. The machine is shared with other engineers'
tests: compare the two sides of one run, not figures across runs.
"""

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import minimal_location
from bench.report import Comparison, write
from devstack.dagster_graphql import LOCATION
from devstack.dagster_stack import dagster_stack
from devstack.environment import PROJECT
from devstack.gateway_server import gateway_server
from devstack.token import mint_token
from integration_patterns.services.gateway.dagster_api.client import DagsterClient

OURS = ("integration_patterns.definitions", LOCATION, "platform_smoke")
MINIMAL = ("bench.minimal_location", minimal_location.LOCATION, minimal_location.JOB)
LOAD_REPETITIONS = 5
RUN_REPETITIONS = 5
POLL_SECONDS = 0.1
SECRET = "bench-run-latency-secret-0123456789abcdef0123456789"
GOAL = 0.7
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

_LOAD = (
    "import importlib, sys; "
    "importlib.import_module(sys.argv[1]).defs().get_repository_def().get_all_jobs()"
)
_LAUNCH = """
mutation RunLatencyLaunch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
_STATUS = "query S($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
_EVENTS = """
query E($id: ID!) {
  logsForRun(runId: $id, limit: 1000) {
    ... on EventConnection { events { __typename ... on MessageEvent { timestamp } } }
  }
}
"""
# Event type -> the phase that ends with it (the first such event of the run).
_MILESTONES = {
    "RunEnqueuedEvent": "enqueued",
    "RunDequeuedEvent": "dequeued",
    "RunStartingEvent": "worker_launched",
    "RunStartEvent": "run_started",
    "ExecutionStepStartEvent": "step_started",
    "RunSuccessEvent": "succeeded",
}


def load_seconds(module: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of a fresh interpreter loading ``module``'s defs.

    CPU seconds barely move with the machine's load; wall seconds are what a run waits.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _LOAD, module], cwd=PROJECT, check=True, capture_output=True
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def workspace_file(directory: Path) -> Path:
    """A workspace with both locations, so one instance and one daemon serve both."""
    path = directory / "workspace.yaml"
    path.write_text(
        "load_from:\n"
        f"  - python_module:\n      module_name: {OURS[0]}\n      location_name: {OURS[1]}\n"
        f"  - python_module:\n      module_name: {MINIMAL[0]}\n"
        f"      location_name: {MINIMAL[1]}\n      working_directory: {PROJECT}\n"
    )
    return path


def graphql_launcher(dagster_url: str, location: str, job: str) -> Callable[[], str]:
    """Launch ``job`` with one ``launchRun`` mutation, poll until it ends; the run id."""
    info = DagsterClient(dagster_url, location=location).job(job)
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": info.repository,
            "jobName": job,
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "bench", "value": "run_latency"}]},
    }

    def run() -> str:
        with httpx.Client(base_url=dagster_url, timeout=60) as client:
            payload = {"query": _LAUNCH, "variables": {"params": params}}
            result = client.post("/graphql", json=payload).json()["data"]["launchRun"]
            if result["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(f"launch of {job} failed: {result}")
            run_id = result["run"]["runId"]
            status = ""
            while status not in TERMINAL:
                time.sleep(POLL_SECONDS)
                body = client.post("/graphql", json={"query": _STATUS, "variables": {"id": run_id}})
                status = body.json()["data"]["runOrError"]["status"]
        if status != "SUCCESS":
            raise RuntimeError(f"run {run_id} of {job} ended {status}")
        return run_id

    return run


def gateway_launcher(gateway_url: str, job: str) -> Callable[[], str]:
    """Launch ``job`` through the gateway with ``wait=true``; the run id."""
    headers = {"Authorization": f"Bearer {mint_token(SECRET, subject='bench', ttl_seconds=3600)}"}

    def run() -> str:
        response = httpx.post(
            f"{gateway_url}/api/v1/jobs/{job}/runs",
            params={"wait": "true", "timeout": 150},
            headers=headers,
            json={"tags": {"bench": "run_latency"}},
            timeout=180,
        )
        body = response.json()
        if response.status_code != 200 or body.get("status") != "SUCCESS":
            raise RuntimeError(f"gateway run of {job}: {response.status_code} {body}")
        return body["run_id"]

    return run


def phases(dagster_url: str, run_id: str, launched_at: float) -> dict[str, float]:
    """Seconds from the launch to each milestone of the run, from its event log."""
    body = httpx.post(
        f"{dagster_url}/graphql",
        json={"query": _EVENTS, "variables": {"id": run_id}},
        timeout=60,
    ).json()
    marks: dict[str, float] = {}
    for event in body["data"]["logsForRun"]["events"]:
        name = _MILESTONES.get(event["__typename"])
        if name and name not in marks:
            marks[name] = int(event["timestamp"]) / 1000 - launched_at
    return marks


def median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    """The median of each milestone over the runs that reached it."""
    names = [n for n in _MILESTONES.values() if any(n in s for s in samples)]
    return {n: round(statistics.median(s[n] for s in samples if n in s), 2) for n in names}


def measure_runs(dagster_url: str, launchers: dict[str, Callable[[], str]]) -> dict[str, Any]:
    """Wall seconds and phases of every launcher's runs, the launchers alternating."""
    for run in launchers.values():  # warm-up: the gateways' job caches, first connections
        run()
    seconds: dict[str, list[float]] = {kind: [] for kind in launchers}
    marks: dict[str, list[dict[str, float]]] = {kind: [] for kind in launchers}
    for _ in range(RUN_REPETITIONS):
        for kind, run in launchers.items():
            launched_at = time.time()
            started = time.perf_counter()
            run_id = run()
            seconds[kind].append(time.perf_counter() - started)
            marks[kind].append(phases(dagster_url, run_id, launched_at))
    return {"seconds": seconds, "phases": {k: median_phases(v) for k, v in marks.items()}}


def main() -> None:
    load: dict[str, list[float]] = {"ours": [], "minimal": []}
    load_cpu: dict[str, list[float]] = {"ours": [], "minimal": []}
    for _ in range(LOAD_REPETITIONS):
        for side, module in (("ours", OURS[0]), ("minimal", MINIMAL[0])):
            wall, cpu = load_seconds(module)
            load[side].append(wall)
            load_cpu[side].append(cpu)

    with tempfile.TemporaryDirectory(prefix="run_latency_") as directory:
        stack = dagster_stack(
            database="dagster_run_latency_bench",
            automation=False,
            clear_queue=True,
            workspace=workspace_file(Path(directory)),
            locations=(OURS[1], MINIMAL[1]),
        )
        with stack as dagster_url:
            env = {"GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"}
            minimal_env = env | {"GATEWAY_DAGSTER_LOCATION": MINIMAL[1]}
            with (
                gateway_server(dagster_url, secret=SECRET, env=env) as ours_gateway,
                gateway_server(dagster_url, secret=SECRET, env=minimal_env) as minimal_gateway,
            ):
                runs = measure_runs(
                    dagster_url,
                    {
                        "graphql ours": graphql_launcher(dagster_url, OURS[1], OURS[2]),
                        "graphql minimal": graphql_launcher(dagster_url, MINIMAL[1], MINIMAL[2]),
                        "gateway ours": gateway_launcher(ours_gateway, OURS[2]),
                        "gateway minimal": gateway_launcher(minimal_gateway, MINIMAL[2]),
                    },
                )

    def rounded(samples: list[float]) -> list[float]:
        return [round(s, 2) for s in samples]

    comparisons = [
        Comparison(
            name="load vs minimal location",
            unit="s",
            ours=statistics.median(load["ours"]),
            baseline_name="minimal location",
            baseline=statistics.median(load["minimal"]),
            goal=GOAL,
            higher_is_better=False,
            extra={
                "samples_s": {side: rounded(v) for side, v in load.items()},
                "cpu_s_median": {
                    side: round(statistics.median(v), 2) for side, v in load_cpu.items()
                },
                "cpu_ratio": round(
                    statistics.median(load_cpu["minimal"]) / statistics.median(load_cpu["ours"]), 3
                ),
            },
        )
    ]
    for via in ("graphql", "gateway"):
        ours, minimal = runs["seconds"][f"{via} ours"], runs["seconds"][f"{via} minimal"]
        comparisons.append(
            Comparison(
                name=f"run latency vs minimal location ({via})",
                unit="s",
                ours=statistics.median(ours),
                baseline_name=f"minimal location {MINIMAL[2]}",
                baseline=statistics.median(minimal),
                goal=GOAL,
                higher_is_better=False,
                extra={
                    "samples_s": {"ours": rounded(ours), "minimal": rounded(minimal)},
                    "phases_ours_s": runs["phases"][f"{via} ours"],
                    "phases_minimal_s": runs["phases"][f"{via} minimal"],
                },
            )
        )
    write("run_latency", comparisons)
