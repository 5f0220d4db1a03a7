"""Dagster's GraphQL answers mapped to what the gateway returns: jobs, runs, results.

Pure functions over the JSON the queries in ``queries.py`` ask for; nothing here talks to
the webserver.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
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


@dataclass(frozen=True)
class BackfillInfo:
    """A backfill of one job over partitions, and the runs it has created so far."""

    backfill_id: str
    job_name: str
    location: str
    status: str
    partitions: list[str]
    runs: list[dict[str, str | None]]


def _tags(node: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in node.get("tags") or []}


def run_info(node: Mapping[str, Any]) -> RunInfo:
    """A ``Run`` node (fragment ``GatewayRunFields``)."""
    return RunInfo(
        run_id=node["runId"],
        job_name=node["jobName"],
        status=node["status"],
        location=(node.get("repositoryOrigin") or {}).get("repositoryLocationName", ""),
        creation_time=node["creationTime"],
        start_time=node.get("startTime"),
        end_time=node.get("endTime"),
        tags=_tags(node),
    )


def backfill_info(node: Mapping[str, Any]) -> BackfillInfo:
    """A ``PartitionBackfill`` node, each run with the partition it ran."""
    partition_set = node.get("partitionSet") or {}
    origin = partition_set.get("repositoryOrigin") or {}
    runs: list[dict[str, str | None]] = [
        {
            "run_id": run["runId"],
            "status": run["status"],
            "partition": _tags(run).get(PARTITION_TAG),
        }
        for run in node.get("runs") or []
    ]
    return BackfillInfo(
        backfill_id=node["id"],
        job_name=partition_set.get("pipelineName", ""),
        location=origin.get("repositoryLocationName", ""),
        status=node["status"],
        partitions=list(node.get("partitionNames") or []),
        runs=runs,
    )


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


def add_events(
    events: Iterable[Mapping[str, Any]],
    assets: dict[str, dict[str, Any]],
    failures: list[dict[str, Any]],
) -> None:
    """Fold one page of a run's events into its results per asset and its step failures."""
    for event in events:
        kind = event["__typename"]
        if kind == "MaterializationEvent" and event.get("assetKey"):
            entry = _asset_entry(assets, event["assetKey"]["path"], event.get("partition"), event)
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
            failures.append({"step_key": event.get("stepKey"), "message": _error_text(event)})


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
