"""The gateway's view of the Dagster webserver: jobs, launches, runs, results, cancels.

One code location only: jobs, runs and backfills of any other location are "not found".
Every call blocks (the app runs them in its thread pool) and fails with the typed errors of
``errors.py``. Queries are the documents of ``queries.py`` mapped by ``results.py``;
launches and cancels go through dagster-graphql's client (see ``transport.py``).
"""

import threading
import time
from collections.abc import Mapping
from typing import Any

from dagster_graphql import DagsterGraphQLClientError

from integration_patterns.services.gateway.dagster_api import queries
from integration_patterns.services.gateway.dagster_api.errors import (
    BackfillNotFoundError,
    CancelRejectedError,
    DagsterError,
    DagsterUnavailableError,
    JobNotFoundError,
    LaunchRejectedError,
    RunConfigInvalidError,
    RunNotFoundError,
)
from integration_patterns.services.gateway.dagster_api.results import (
    BackfillInfo,
    JobInfo,
    RunInfo,
    add_events,
    backfill_info,
    run_info,
)
from integration_patterns.services.gateway.dagster_api.transport import GraphQLTransport

JOBS_CACHE_SECONDS = 10.0
EVENTS_PAGE = 1000
HIDDEN_JOB_PREFIX = "__"  # Dagster's implicit asset jobs (__ASSET_JOB...)


class DagsterClient:
    """Blocking calls against one Dagster webserver, limited to one code location."""

    def __init__(self, url: str, *, location: str, timeout: float = 30.0) -> None:
        self._transport = GraphQLTransport(url, timeout=timeout)
        self._location = location
        self._jobs_lock = threading.Lock()
        self._jobs: dict[str, JobInfo] = {}
        self._jobs_expire = 0.0
        self._partitions: dict[str, tuple[float, list[str]]] = {}
        self._queues_runs: bool | None = None

    @property
    def location(self) -> str:
        """The code location whose jobs this client exposes."""
        return self._location

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._transport.close()

    def _answer(
        self,
        query: str,
        variables: Mapping[str, Any],
        field: str,
        expected: str,
        *,
        missing: DagsterError | None = None,
    ) -> dict[str, Any]:
        """The answer's ``field`` when it has the ``expected`` type.

        A ``...NotFoundError`` answer raises ``missing`` (when the call can miss); any other
        type (``PythonError``...) means Dagster cannot answer, which the gateway says as 503.
        """
        result = self._transport.query(query, variables)[field]
        kind = result["__typename"]
        if kind == expected:
            return result
        if missing is not None and kind.endswith("NotFoundError"):
            raise missing
        raise DagsterUnavailableError(f"{field} answered {kind}: {result.get('message')}")

    def ping(self) -> bool:
        """True when the webserver answers ``/server_info``."""
        return self._transport.ping()

    def queues_runs(self) -> bool:
        """Whether the instance queues submitted runs (QueuedRunCoordinator); asked once.

        When it does, a run is QUEUED the moment its launch succeeds, so the gateway can say
        so without reading the run back (a second round trip per launch).
        """
        if self._queues_runs is None:
            instance = self._transport.query(queries.QUEUING_QUERY)["instance"]
            self._queues_runs = bool(instance["runQueuingSupported"])
        return self._queues_runs

    def list_jobs(self, *, refresh: bool = False) -> list[JobInfo]:
        """The location's jobs, cached for a few seconds (a launch looks its job up)."""
        with self._jobs_lock:
            if refresh or time.monotonic() >= self._jobs_expire:
                result = self._answer(
                    queries.JOBS_QUERY, {}, "repositoriesOrError", "RepositoryConnection"
                )
                jobs = {
                    job["name"]: JobInfo(
                        name=job["name"],
                        description=job["description"],
                        location=repo["location"]["name"],
                        repository=repo["name"],
                    )
                    for repo in result["nodes"]
                    if repo["location"]["name"] == self._location
                    for job in repo["jobs"]
                    if not job["name"].startswith(HIDDEN_JOB_PREFIX)
                }
                self._jobs = dict(sorted(jobs.items()))
                self._jobs_expire = time.monotonic() + JOBS_CACHE_SECONDS
            return list(self._jobs.values())

    def job(self, name: str) -> JobInfo:
        """One job, looked up again when the cache does not know it (it may be new)."""
        for refresh in (False, True):
            found = {j.name: j for j in self.list_jobs(refresh=refresh)}.get(name)
            if found:
                return found
        raise JobNotFoundError(f"no job named {name!r} in code location {self._location!r}")

    def partition_keys(self, job: str) -> list[str]:
        """The job's partition keys, oldest first ([] when unpartitioned); cached briefly."""
        now = time.monotonic()
        cached = self._partitions.get(job)
        if cached is not None and cached[0] > now:
            return cached[1]
        info = self.job(job)
        selector = {
            "pipelineName": job,
            "repositoryName": info.repository,
            "repositoryLocationName": info.location,
        }
        result = self._answer(
            queries.PARTITION_KEYS_QUERY,
            {"selector": selector},
            "pipelineOrError",
            "Pipeline",
            missing=JobNotFoundError(f"no job named {job!r}"),
        )
        keys = list(result["partitionKeysOrError"]["partitionKeys"])
        self._partitions[job] = (now + JOBS_CACHE_SECONDS, keys)
        return keys

    def launch_backfill(self, job: str, *, partitions: list[str], tags: Mapping[str, str]) -> str:
        """Ask Dagster to run ``job`` once per partition (its backfill daemon does); the id."""
        info = self.job(job)
        params = {
            "selector": {
                "partitionSetName": f"{job}_partition_set",
                "repositorySelector": {
                    "repositoryName": info.repository,
                    "repositoryLocationName": info.location,
                },
            },
            "partitionNames": partitions,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        result = self._transport.query(queries.LAUNCH_BACKFILL_MUTATION, {"params": params})
        result = result["launchPartitionBackfill"]
        kind = result["__typename"]
        if kind == "LaunchBackfillSuccess":
            return result["backfillId"]
        if kind == "RunConfigValidationInvalid":
            errors = [
                {"message": e["message"], "path": [], "reason": e["reason"]}
                for e in result["errors"]
            ]
            raise RunConfigInvalidError(errors)
        if kind in ("PartitionSetNotFoundError", "PartitionKeysNotFoundError"):
            raise LaunchRejectedError(kind, result.get("message") or kind)
        raise DagsterUnavailableError(f"backfill failed in Dagster ({kind})")

    def backfill(self, backfill_id: str) -> BackfillInfo:
        """A backfill of this location, with its runs' ids, statuses and partitions."""
        missing = BackfillNotFoundError(f"no backfill {backfill_id}")
        result = self._answer(
            queries.BACKFILL_QUERY,
            {"id": backfill_id},
            "partitionBackfillOrError",
            "PartitionBackfill",
            missing=missing,
        )
        info = backfill_info(result)
        if info.location != self._location:
            raise missing
        return info

    def launch(self, job: str, *, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Submit a run of ``job`` (queued by the instance's run coordinator); its run id."""
        info = self.job(job)
        try:
            return self._transport.official_client().submit_job_execution(
                job,
                repository_location_name=info.location,
                repository_name=info.repository,
                run_config=dict(run_config),
                tags=dict(tags),
            )
        except DagsterGraphQLClientError as exc:
            kind = str(exc.args[0]) if exc.args else "Unknown"
            detail = exc.args[1] if len(exc.args) > 1 else None
            if kind in ("RunConfigValidationInvalid", "PipelineConfigValidationInvalid"):
                errors = [
                    {"message": e["message"], "path": e.get("path") or [], "reason": e["reason"]}
                    for e in detail or []
                ]
                raise RunConfigInvalidError(errors) from None
            if kind in ("PipelineNotFoundError", "JobNotFoundError"):
                raise JobNotFoundError(f"no job named {job!r}") from None
            if kind == "UnauthorizedError":
                raise DagsterUnavailableError("Dagster refused the gateway's launch") from None
            if isinstance(detail, str) and kind not in ("PythonError", "Unknown"):
                raise LaunchRejectedError(kind, detail) from None
            # Transport failures and server errors: the library's text quotes the variables.
            raise DagsterUnavailableError(f"launch failed in Dagster ({kind})") from None

    def run(self, run_id: str) -> RunInfo:
        """A run of this location."""
        missing = RunNotFoundError(f"no run {run_id}")
        result = self._answer(
            queries.RUN_QUERY, {"runId": run_id}, "runOrError", "Run", missing=missing
        )
        info = run_info(result)
        if info.location != self._location:
            raise missing
        return info

    def find_run_by_tag(self, key: str, value: str) -> RunInfo | None:
        """The newest run carrying tag ``key=value``, if any."""
        variables = {"filter": {"tags": [{"key": key, "value": value}]}}
        result = self._answer(queries.RUNS_BY_TAG_QUERY, variables, "runsOrError", "Runs")
        runs = [run_info(r) for r in result["results"]]
        return runs[0] if runs else None

    def results(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Materialization and check metadata per asset, and step failures, of one run."""
        assets: dict[str, dict[str, Any]] = {}
        failures: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            variables = {"runId": run_id, "cursor": cursor, "limit": EVENTS_PAGE}
            page = self._answer(
                queries.EVENTS_QUERY,
                variables,
                "logsForRun",
                "EventConnection",
                missing=RunNotFoundError(f"no run {run_id}"),
            )
            add_events(page["events"], assets, failures)
            cursor = page["cursor"]
            if not page["hasMore"]:
                return assets, failures

    def cancel(self, run_id: str) -> None:
        """Ask Dagster to terminate (or, when still queued, cancel) a run."""
        try:
            self._transport.official_client().terminate_run(run_id)
        except DagsterGraphQLClientError as exc:
            kind = str(exc.args[0]) if exc.args else "Unknown"
            if kind == "RunNotFoundError":
                raise RunNotFoundError(f"no run {run_id}") from None
            if kind == "TerminateRunFailure":
                raise CancelRejectedError(str(exc.args[1])) from None
            raise DagsterUnavailableError(f"cancel failed in Dagster ({kind})") from None
