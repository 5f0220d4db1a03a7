"""The gateway's view of the Dagster webserver: jobs, launches, runs, results, cancels.

Launches and cancels go through dagster-graphql's ``DagsterGraphQLClient`` (the official
client, which knows the mutation and its result types). It has no call for job
descriptions, run details, runs by tag or event metadata, so those are plain GraphQL
queries over one pooled ``httpx.Client``.

``DagsterGraphQLClient`` is synchronous and its transport refuses to be entered by two
threads at once, so each worker thread gets its own instance. Every call here is blocking;
the app runs them in its thread pool.

Errors are typed so the app can map them to HTTP statuses without parsing messages, and
their messages never include run config (it may carry credentials): the client library's
own messages quote the variables, so they are dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
JOBS_CACHE_SECONDS = 10.0
EVENTS_PAGE = 1000
HIDDEN_JOB_PREFIX = "__"  # Dagster's implicit asset jobs (__ASSET_JOB...)


class DagsterError(Exception):
    """Base of everything this module raises."""


class DagsterUnavailableError(DagsterError):
    """The webserver did not answer, or answered with a server error."""


class JobNotFoundError(DagsterError):
    """No such job in the gateway's code location."""


class RunNotFoundError(DagsterError):
    """No such run (or it belongs to another code location)."""


class RunConfigInvalidError(DagsterError):
    """Dagster rejected the run config; ``errors`` are its messages with path and reason."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors) or "invalid run config")
        self.errors = errors


class LaunchRejectedError(DagsterError):
    """Dagster refused the launch for another reason (``kind`` is its result type)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CancelRejectedError(DagsterError):
    """The run cannot be cancelled (typically: it already finished)."""


class BackfillNotFoundError(DagsterError):
    """No such backfill (or it belongs to another code location)."""


PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class JobInfo:
    """One job of the code location."""

    name: str
    description: str | None
    location: str
    repository: str


@dataclass(frozen=True)
class RunInfo:
    """A run's identity, state and timing."""

    run_id: str
    job_name: str
    status: str
    location: str
    creation_time: float
    start_time: float | None = None
    end_time: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True once the run can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def execution_time(self) -> float | None:
        """Seconds from the run worker's start to its end, once both are known."""
        if self.start_time is None or self.end_time is None:
            return None
        return round(self.end_time - self.start_time, 3)


_RUN_FIELDS = """
fragment GatewayRunFields on Run {
  runId jobName status creationTime startTime endTime
  tags { key value }
  repositoryOrigin { repositoryLocationName }
}
"""

_QUEUING_QUERY = "query GatewayInstance { instance { runQueuingSupported } }"

_JOBS_QUERY = """
query GatewayJobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name description } }
    }
    ... on PythonError { message }
  }
}
"""

_RUN_QUERY = (
    """
query GatewayRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { ...GatewayRunFields }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""
    + _RUN_FIELDS
)

_RUNS_BY_TAG_QUERY = (
    """
query GatewayRunsByTag($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 1) {
    __typename
    ... on Runs { results { ...GatewayRunFields } }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""
    + _RUN_FIELDS
)

_METADATA_FIELDS = """
fragment GatewayMetadata on MetadataEntry {
  __typename label
  ... on TextMetadataEntry { text }
  ... on IntMetadataEntry { intValue intRepr }
  ... on FloatMetadataEntry { floatValue floatRepr }
  ... on BoolMetadataEntry { boolValue }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
  ... on PathMetadataEntry { path }
  ... on NotebookMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on TimestampMetadataEntry { timestamp }
  ... on PipelineRunMetadataEntry { runId }
  ... on AssetMetadataEntry { assetKey { path } }
  ... on JobMetadataEntry { jobName }
  ... on PoolMetadataEntry { pool }
  ... on PythonArtifactMetadataEntry { module name }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
  ... on TableMetadataEntry { table { records } }
}
"""

_EVENTS_QUERY = (
    """
query GatewayRunEvents($runId: ID!, $cursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MaterializationEvent {
          stepKey partition assetKey { path } metadataEntries { ...GatewayMetadata }
        }
        ... on AssetCheckEvaluationEvent {
          stepKey
          evaluation {
            checkName success severity partition description assetKey { path }
            metadataEntries { ...GatewayMetadata }
          }
        }
        ... on ExecutionStepFailureEvent {
          stepKey error { message errorChain { error { message } } }
        }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""
    + _METADATA_FIELDS
)


_PARTITION_KEYS_QUERY = """
query GatewayPartitionKeys($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { partitionKeysOrError { partitionKeys } }
    ... on PipelineNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

_LAUNCH_BACKFILL = """
mutation GatewayBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConfigValidationInvalid { errors { message reason } }
  }
}
"""

_BACKFILL_QUERY = """
query GatewayBackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status partitionNames partitionSetName
      partitionSet { pipelineName repositoryOrigin { repositoryLocationName } }
      runs { runId status tags { key value } }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


@dataclass(frozen=True)
class BackfillInfo:
    """A backfill of one job over partitions, and the runs it has created so far."""

    backfill_id: str
    job_name: str
    status: str
    partitions: list[str]
    runs: list[dict[str, str | None]]


def metadata_value(entry: Mapping[str, Any]) -> Any:
    """A metadata entry's value as plain JSON (the UI's typed entries flattened)."""
    kind = entry["__typename"]
    if kind == "IntMetadataEntry":
        return entry["intValue"] if entry["intValue"] is not None else int(entry["intRepr"])
    if kind == "FloatMetadataEntry":
        # NaN and infinities have no JSON number: keep Dagster's text for them.
        return entry["floatValue"] if entry["floatValue"] is not None else entry["floatRepr"]
    if kind == "JsonMetadataEntry":
        return json.loads(entry["jsonString"])
    if kind == "TableMetadataEntry":
        return [json.loads(r) for r in entry["table"]["records"]]
    if kind == "AssetMetadataEntry":
        return "/".join(entry["assetKey"]["path"])
    if kind == "PythonArtifactMetadataEntry":
        return f"{entry['module']}.{entry['name']}"
    if kind == "TableSchemaMetadataEntry":
        return entry["schema"]
    for key in (
        "text",
        "boolValue",
        "mdStr",
        "path",
        "url",
        "timestamp",
        "runId",
        "jobName",
        "pool",
    ):
        if key in entry:
            return entry[key]
    return None  # NullMetadataEntry, code references, column lineage


def _metadata(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {e["label"]: metadata_value(e) for e in entries}


def _run_info(node: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        run_id=node["runId"],
        job_name=node["jobName"],
        status=node["status"],
        location=(node.get("repositoryOrigin") or {}).get("repositoryLocationName", ""),
        creation_time=node["creationTime"],
        start_time=node.get("startTime"),
        end_time=node.get("endTime"),
        tags={t["key"]: t["value"] for t in node.get("tags", [])},
    )


class DagsterClient:
    """Blocking calls against one Dagster webserver, limited to one code location."""

    def __init__(self, url: str, *, location: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"not a URL: {url}")
        self._url = url.rstrip("/")
        self._location = location
        self._timeout = timeout
        self._client_args: dict[str, Any] = {
            "hostname": parts.hostname,
            "port_number": parts.port,
            "use_https": parts.scheme == "https",
            "timeout": max(1, int(timeout)),
            "path_prefix": parts.path.rstrip("/"),
        }
        self._local = threading.local()
        self._http = httpx.Client(base_url=self._url, timeout=timeout)
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
        self._http.close()

    def _graphql_client(self) -> DagsterGraphQLClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = DagsterGraphQLClient(**self._client_args)
            self._local.client = client
        return client

    def _query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.post(
                "/graphql", json={"query": query, "variables": dict(variables or {})}
            )
        except httpx.HTTPError as exc:
            raise DagsterUnavailableError(f"Dagster webserver unreachable: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise DagsterUnavailableError(f"Dagster webserver answered {response.status_code}")
        if body.get("errors") or not isinstance(body.get("data"), dict):
            messages = "; ".join(str(e.get("message", "")) for e in body.get("errors") or [])
            raise DagsterUnavailableError(f"Dagster GraphQL error: {messages or 'no data'}")
        return body["data"]

    def ping(self) -> bool:
        """True when the webserver answers ``/server_info``."""
        try:
            return self._http.get("/server_info").status_code == 200
        except httpx.HTTPError:
            return False

    def queues_runs(self) -> bool:
        """Whether the instance queues submitted runs (QueuedRunCoordinator); asked once.

        When it does, a run is QUEUED the moment its launch succeeds, so the gateway can say
        so without reading the run back (a second round trip per launch).
        """
        if self._queues_runs is None:
            instance = self._query(_QUEUING_QUERY)["instance"]
            self._queues_runs = bool(instance["runQueuingSupported"])
        return self._queues_runs

    def list_jobs(self, *, refresh: bool = False) -> list[JobInfo]:
        """The location's jobs, cached for a few seconds (a launch looks its job up)."""
        with self._jobs_lock:
            if refresh or time.monotonic() >= self._jobs_expire:
                result = self._query(_JOBS_QUERY)["repositoriesOrError"]
                if result["__typename"] != "RepositoryConnection":
                    raise DagsterUnavailableError(f"cannot list jobs: {result.get('message')}")
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
        result = self._query(_PARTITION_KEYS_QUERY, {"selector": selector})["pipelineOrError"]
        if result["__typename"] == "PipelineNotFoundError":
            raise JobNotFoundError(f"no job named {job!r}")
        if result["__typename"] != "Pipeline":
            raise DagsterUnavailableError(f"cannot read partitions: {result.get('message')}")
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
        result = self._query(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
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
        result = self._query(_BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] == "BackfillNotFoundError":
            raise BackfillNotFoundError(f"no backfill {backfill_id}")
        if result["__typename"] != "PartitionBackfill":
            raise DagsterUnavailableError(f"cannot read backfill: {result.get('message')}")
        partition_set = result.get("partitionSet") or {}
        origin = partition_set.get("repositoryOrigin") or {}
        if origin.get("repositoryLocationName") != self._location:
            raise BackfillNotFoundError(f"no backfill {backfill_id}")
        runs = []
        for run in result.get("runs") or []:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            runs.append(
                {
                    "run_id": run["runId"],
                    "status": run["status"],
                    "partition": tags.get(PARTITION_TAG),
                }
            )
        return BackfillInfo(
            backfill_id=result["id"],
            job_name=partition_set.get("pipelineName", ""),
            status=result["status"],
            partitions=list(result.get("partitionNames") or []),
            runs=runs,
        )

    def launch(self, job: str, *, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Submit a run of ``job`` (queued by the instance's run coordinator); its run id."""
        info = self.job(job)
        try:
            return self._graphql_client().submit_job_execution(
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
        result = self._query(_RUN_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            raise RunNotFoundError(f"no run {run_id}")
        if result["__typename"] != "Run":
            raise DagsterUnavailableError(f"cannot read run: {result.get('message')}")
        info = _run_info(result)
        if info.location != self._location:
            raise RunNotFoundError(f"no run {run_id}")
        return info

    def find_run_by_tag(self, key: str, value: str) -> RunInfo | None:
        """The newest run carrying tag ``key=value``, if any."""
        variables = {"filter": {"tags": [{"key": key, "value": value}]}}
        result = self._query(_RUNS_BY_TAG_QUERY, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterUnavailableError(f"cannot search runs: {result.get('message')}")
        runs = [_run_info(r) for r in result["results"]]
        return runs[0] if runs else None

    def results(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Materialization and check metadata per asset, and step failures, of one run."""
        assets: dict[str, dict[str, Any]] = {}
        failures: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            variables = {"runId": run_id, "cursor": cursor, "limit": EVENTS_PAGE}
            page = self._query(_EVENTS_QUERY, variables)["logsForRun"]
            if page["__typename"] == "RunNotFoundError":
                raise RunNotFoundError(f"no run {run_id}")
            if page["__typename"] != "EventConnection":
                raise DagsterUnavailableError(f"cannot read run events: {page.get('message')}")
            for event in page["events"]:
                kind = event["__typename"]
                if kind == "MaterializationEvent" and event.get("assetKey"):
                    entry = _asset_entry(
                        assets, event["assetKey"]["path"], event.get("partition"), event
                    )
                    entry["metadata"] = _metadata(event["metadataEntries"])
                elif kind == "AssetCheckEvaluationEvent":
                    evaluation = event["evaluation"]
                    entry = _asset_entry(
                        assets, evaluation["assetKey"]["path"], evaluation.get("partition"), event
                    )
                    entry["checks"][evaluation["checkName"]] = {
                        "passed": evaluation["success"],
                        "severity": evaluation["severity"],
                        "description": evaluation.get("description"),
                        "metadata": _metadata(evaluation["metadataEntries"]),
                    }
                elif kind == "ExecutionStepFailureEvent":
                    failures.append(
                        {"step_key": event.get("stepKey"), "message": _error_text(event)}
                    )
            cursor = page["cursor"]
            if not page["hasMore"]:
                return assets, failures

    def cancel(self, run_id: str) -> None:
        """Ask Dagster to terminate (or, when still queued, cancel) a run."""
        try:
            self._graphql_client().terminate_run(run_id)
        except DagsterGraphQLClientError as exc:
            kind = str(exc.args[0]) if exc.args else "Unknown"
            if kind == "RunNotFoundError":
                raise RunNotFoundError(f"no run {run_id}") from None
            if kind == "TerminateRunFailure":
                raise CancelRejectedError(str(exc.args[1])) from None
            raise DagsterUnavailableError(f"cancel failed in Dagster ({kind})") from None


def _error_text(event: Mapping[str, Any]) -> str:
    # Dagster wraps the user's exception ("Error occurred while executing op ..."); the
    # chain holds the exception that says what went wrong.
    error = event.get("error") or {}
    messages = [error.get("message", "")]
    messages += [link["error"]["message"] for link in error.get("errorChain", [])]
    return "\n".join(m.strip() for m in messages if m.strip())


def _asset_entry(
    assets: dict[str, dict[str, Any]],
    path: list[str],
    partition: str | None,
    event: Mapping[str, Any],
) -> dict[str, Any]:
    key = "/".join(path) + (f"[{partition}]" if partition else "")
    return assets.setdefault(
        key,
        {
            "asset_key": path,
            "partition": partition,
            "step_key": event.get("stepKey"),
            "metadata": {},
            "checks": {},
        },
    )
