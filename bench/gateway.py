"""Gateway: launches per second through the REST gateway against direct GraphQL launches.

"vs direct graphql": the same webserver takes ``launchRun`` mutations straight from httpx
(the baseline) and ``POST /api/v1/jobs/platform_smoke/runs`` through the gateway (JWT check,
rate limit, job lookup, launch via dagster-graphql's client, status read back), alternating,
``LAUNCHES`` per batch from ``CONCURRENCY`` client threads (one httpx client each), median
of ``REPETITIONS``. The added latency is ours minus the baseline at p50 and p99, measured
twice: one launch at a time (``LATENCY_SAMPLES`` per side, alternating: the gateway's own
cost) and over every launch of the concurrent batches (queueing on 2 shared cores
included). With ~100 samples per side, p99 is close to the maximum and noisy.

The webserver runs without the daemon, on a run storage of its own (PostgreSQL database
``dagster_gateway_bench``, so no other daemon dequeues these runs either): launched runs
stay queued and no run worker ever starts; after each batch they are cancelled and
deleted. Runs carry the tag ``bench=gateway``.
"""

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.report import Comparison, write
from devstack.dagster_stack import dagster_stack
from devstack.gateway_server import gateway_server
from devstack.token import mint_token
from integration_patterns.services.gateway.dagster_api.client import DagsterClient

JOB = "platform_smoke"
LAUNCHES, REPETITIONS, CONCURRENCY = 20, 5, 4
LATENCY_SAMPLES = 60
SECRET = "bench-gateway-secret-0123456789abcdef0123456789"

_LAUNCH = """
mutation BenchLaunch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
  }
}
"""
_CANCEL = """
mutation BenchCancel($ids: [String!]!) {
  terminateRuns(runIds: $ids) { __typename }
}
"""
_DELETE = "mutation BenchDelete($id: String!) { deleteRun(runId: $id) { __typename } }"


def batch(launch_one: Callable[[httpx.Client], str]) -> tuple[float, list[float], list[str]]:
    """Launches per second, each launch's seconds and the run ids, for one batch."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def timed(_: int) -> tuple[float, str]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
            clients.append(client)
        started = time.perf_counter()
        run_id = launch_one(client)
        return time.perf_counter() - started, run_id

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        started = time.perf_counter()
        results = list(pool.map(timed, range(LAUNCHES)))
        elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return LAUNCHES / elapsed, [r[0] for r in results], [r[1] for r in results]


def direct_launcher(dagster_url: str) -> Callable[[httpx.Client], str]:
    """The baseline: one ``launchRun`` mutation per launch, selector known in advance."""
    info = DagsterClient(dagster_url, location="integration_patterns").job(JOB)
    params = {
        "selector": {
            "repositoryLocationName": info.location,
            "repositoryName": info.repository,
            "jobName": JOB,
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "bench", "value": "gateway"}]},
    }

    def launch(client: httpx.Client) -> str:
        body = client.post(
            f"{dagster_url}/graphql", json={"query": _LAUNCH, "variables": {"params": params}}
        ).json()
        result = body["data"]["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"direct launch failed: {result}")
        return result["run"]["runId"]

    return launch


def gateway_launcher(gateway_url: str) -> Callable[[httpx.Client], str]:
    """Ours: the REST call a service would make."""
    headers = {"Authorization": f"Bearer {mint_token(SECRET, subject='bench', ttl_seconds=3600)}"}
    url = f"{gateway_url}/api/v1/jobs/{JOB}/runs"

    def launch(client: httpx.Client) -> str:
        response = client.post(url, headers=headers, json={"tags": {"bench": "gateway"}})
        if response.status_code != 202:
            raise RuntimeError(f"gateway launch failed: {response.status_code} {response.text}")
        return response.json()["run_id"]

    return launch


def clean_up(dagster_url: str, run_ids: list[str]) -> None:
    """Cancel the queued runs, then delete them from the run storage."""
    with httpx.Client(base_url=dagster_url, timeout=60) as client:
        client.post("/graphql", json={"query": _CANCEL, "variables": {"ids": run_ids}})
        for run_id in run_ids:
            client.post("/graphql", json={"query": _DELETE, "variables": {"id": run_id}})


def sequential_latencies(
    launchers: dict[str, Callable[[httpx.Client], str]], dagster_url: str
) -> dict[str, list[float]]:
    """One launch at a time, the two sides alternating: latency without queueing."""
    seconds: dict[str, list[float]] = {side: [] for side in launchers}
    run_ids: list[str] = []
    with httpx.Client(timeout=60) as client:
        for _ in range(LATENCY_SAMPLES):
            for side, launch in launchers.items():
                started = time.perf_counter()
                run_ids.append(launch(client))
                seconds[side].append(time.perf_counter() - started)
    clean_up(dagster_url, run_ids)
    return seconds


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the inclusive method."""
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    rates: dict[str, list[float]] = {"ours": [], "baseline": []}
    latencies: dict[str, list[float]] = {"ours": [], "baseline": []}
    sequential: dict[str, list[float]] = {}
    with dagster_stack(daemon=False, database="dagster_gateway_bench") as dagster_url:
        env = {"GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"}
        with gateway_server(dagster_url, secret=SECRET, env=env) as gateway_url:
            launchers = {
                "baseline": direct_launcher(dagster_url),
                "ours": gateway_launcher(gateway_url),
            }
            # One untimed launch each: the gateway's job cache and the code server warm up.
            for launch in launchers.values():
                with httpx.Client(timeout=60) as client:
                    clean_up(dagster_url, [launch(client)])
            for _ in range(REPETITIONS):
                for side, launch in launchers.items():
                    rate, seconds, run_ids = batch(launch)
                    clean_up(dagster_url, run_ids)
                    rates[side].append(rate)
                    latencies[side].extend(seconds)
            sequential = sequential_latencies(launchers, dagster_url)
    extra: dict[str, Any] = {"launches_per_batch": LAUNCHES, "concurrency": CONCURRENCY}
    for label, samples in (("sequential", sequential), (f"at {CONCURRENCY} clients", latencies)):
        for q in (50, 99):
            ours_ms = percentile(samples["ours"], q) * 1000
            base_ms = percentile(samples["baseline"], q) * 1000
            extra[f"added_p{q}_ms {label}"] = (
                f"{ours_ms - base_ms:+.1f} (gateway {ours_ms:.1f}, direct {base_ms:.1f})"
            )
    extra["samples_launches_per_s"] = {k: [round(r, 1) for r in v] for k, v in rates.items()}
    write(
        "gateway",
        [
            Comparison(
                name="vs direct graphql",
                unit="launches/s",
                ours=statistics.median(rates["ours"]),
                baseline_name="direct graphql",
                baseline=statistics.median(rates["baseline"]),
                goal=0.8,
                extra=extra,
            )
        ],
    )
