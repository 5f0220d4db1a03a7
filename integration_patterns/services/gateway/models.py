"""Request and response bodies of the gateway's REST API (they become its OpenAPI schema)."""

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TAGS = 20
MAX_TAG_VALUE = 1000
# Dagster-style tag keys, an optional "prefix/" included; the gateway's and Dagster's own
# prefixes are reserved so a client cannot forge an idempotency key or a system tag.
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,63}(/[A-Za-z0-9_.-]{1,63})?$")
RESERVED_TAG_PREFIXES = ("dagster/", "gateway/", ".dagster")
MAX_PARTITION_KEY = 200
MAX_BACKFILL_PARTITIONS = 1000


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            raise ValueError(f"tag key {key!r} must be letters, digits, '_', '.', '-'")
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise ValueError(f"tag key {key!r} uses a reserved prefix")
        if len(value) > MAX_TAG_VALUE:
            raise ValueError(f"tag {key!r} is longer than {MAX_TAG_VALUE} characters")
    return tags


PartitionKey = Annotated[str, Field(min_length=1, max_length=MAX_PARTITION_KEY)]
RunTags = Annotated[dict[str, str], AfterValidator(_check_tags)]
# The tag rules above, stated in the OpenAPI document so clients (and fuzzers) see them.
_TAGS_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_TAGS,
    "propertyNames": {
        "pattern": _TAG_KEY.pattern,
        "not": {"pattern": "^(" + "|".join(re.escape(p) for p in RESERVED_TAG_PREFIXES) + ")"},
    },
    "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
}


def _tags_field(description: str) -> Any:
    """A ``RunTags`` field: empty by default, its rules stated in the schema."""
    return Field(default_factory=dict, description=description, json_schema_extra=_TAGS_SCHEMA)


class LaunchRequest(BaseModel):
    """What to run: run config, extra tags and, for a partitioned job, its partition."""

    model_config = ConfigDict(extra="forbid")

    partition: PartitionKey | None = Field(
        default=None,
        description="Partition key to run, required for a partitioned job (e.g. "
        "customer_enrichment: '2026-11-29'; GET /api/v1/jobs/{job}/partitions lists them) "
        "and refused for others. A range is a backfill: POST /api/v1/jobs/{job}/backfills.",
    )

    run_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Dagster run config, e.g. {'ops': {'my_asset': {'config': {...}}}}; "
        "validated by Dagster (errors come back as 422 with its messages).",
    )
    tags: RunTags = _tags_field(
        f"Extra run tags (at most {MAX_TAGS}); keys 'dagster/' and 'gateway/' are reserved."
    )


class PartitionRange(BaseModel):
    """First and last partition keys, both included, in the job's partition order."""

    model_config = ConfigDict(extra="forbid")

    start: PartitionKey
    end: PartitionKey


class BackfillRequest(BaseModel):
    """A backfill: one run of the job per partition of the range, created by Dagster."""

    model_config = ConfigDict(extra="forbid")

    partition_range: PartitionRange
    tags: RunTags = _tags_field(
        f"Extra tags for the backfill's runs (at most {MAX_TAGS}); keys 'dagster/' and "
        "'gateway/' are reserved."
    )


class BackfillAccepted(BaseModel):
    """A backfill Dagster accepted; its runs are created by the daemon as it proceeds."""

    backfill_id: str
    status: str
    partitions: list[str]


class BackfillRun(BaseModel):
    """One run of a backfill."""

    run_id: str
    status: str
    partition: str | None = None


class BackfillResult(BaseModel):
    """A backfill's status and the runs it has created so far."""

    backfill_id: str
    job: str
    status: str = Field(description="Dagster's backfill status (REQUESTED, COMPLETED...)")
    partitions: list[str]
    runs: list[BackfillRun]


class PartitionList(BaseModel):
    """A job's partition keys, oldest first (empty for an unpartitioned job)."""

    job: str
    partitions: list[str]


class Job(BaseModel):
    """A job of the code location."""

    name: str
    description: str | None = None


class JobList(BaseModel):
    """The jobs callers may launch (subject to their scopes)."""

    location: str
    jobs: list[Job]


class RunAccepted(BaseModel):
    """A run that was queued (or, with ``wait``, had not finished before the timeout)."""

    run_id: str
    status: str = Field(
        description="Dagster's run status (QUEUED, STARTING, STARTED, CANCELING...), or "
        "UNKNOWN when Dagster could not be read right after accepting the run."
    )


class CheckResult(BaseModel):
    """One asset check evaluation."""

    passed: bool
    severity: str
    description: str | None = None
    metadata: dict[str, Any]


class AssetResult(BaseModel):
    """What a run recorded for one asset (and partition): materialization and checks."""

    asset_key: list[str]
    partition: str | None = None
    step_key: str | None = None
    metadata: dict[str, Any]
    checks: dict[str, CheckResult]


class StepFailure(BaseModel):
    """A step that failed, with Dagster's error message."""

    step_key: str | None = None
    message: str


class RunResult(BaseModel):
    """A run's state and, as far as it got, its results per asset."""

    run_id: str
    job: str
    status: str
    execution_time: float | None = Field(
        default=None, description="Seconds from the run's start to its end, once finished."
    )
    results: dict[str, AssetResult]
    failures: list[StepFailure]


class HealthReport(BaseModel):
    """Whether the gateway can reach the Dagster webserver."""

    status: str
    dagster: str


class Error(BaseModel):
    """Every error body: ``detail`` is a message, or a list of issues for 422."""

    detail: Any
