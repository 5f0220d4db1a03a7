"""Request and response bodies of the gateway's REST API (they become its OpenAPI schema)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TAGS = 20
MAX_TAG_VALUE = 1000
# Dagster-style tag keys, an optional "prefix/" included; the gateway's and Dagster's own
# prefixes are reserved so a client cannot forge an idempotency key or a system tag.
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,63}(/[A-Za-z0-9_.-]{1,63})?$")
RESERVED_TAG_PREFIXES = ("dagster/", "gateway/", ".dagster")


class LaunchRequest(BaseModel):
    """What to run: the job's run config and extra run tags (both optional)."""

    model_config = ConfigDict(extra="forbid")

    run_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Dagster run config, e.g. {'ops': {'my_asset': {'config': {...}}}}; "
        "validated by Dagster (errors come back as 422 with its messages).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description=f"Extra run tags (at most {MAX_TAGS}); keys 'dagster/' and 'gateway/' "
        "are reserved.",
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
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


class Health(BaseModel):
    """Whether the gateway can reach the Dagster webserver."""

    status: str
    dagster: str


class Error(BaseModel):
    """Every error body: ``detail`` is a message, or a list of issues for 422."""

    detail: Any
