"""``/api/v1/jobs``: the code location's jobs, their partitions, launches and backfills.

No ``from __future__ import annotations`` here: FastAPI must evaluate the annotations, and
the launch's ``timeout`` bound is built from the settings.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from integration_patterns.services.gateway.auth import READ_SCOPE, Principal
from integration_patterns.services.gateway.dagster_api.results import PARTITION_TAG
from integration_patterns.services.gateway.dependencies import Caller, Gateway, GatewayState
from integration_patterns.services.gateway.http_errors import (
    ERROR_RESPONSES,
    GatewayError,
    dagster_call,
    error_responses,
)
from integration_patterns.services.gateway.idempotency import launch_once
from integration_patterns.services.gateway.models import (
    MAX_BACKFILL_PARTITIONS,
    BackfillAccepted,
    BackfillRequest,
    Error,
    Job,
    JobList,
    LaunchRequest,
    PartitionList,
    RunAccepted,
    RunResult,
)
from integration_patterns.services.gateway.routes.runs import run_result, wait_for
from integration_patterns.services.gateway.settings import GatewaySettings

SUBJECT_TAG = "gateway/subject"
JOB_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,199}$"

JobName = Annotated[str, Path(pattern=JOB_NAME, description="Job name")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key (per token subject) gives the same run",
    ),
]


def jobs_router(settings: GatewaySettings) -> APIRouter:
    """The job routes; the launch's largest ``timeout`` is a setting, stated in OpenAPI."""
    router = APIRouter()
    router.add_api_route(
        "/api/v1/jobs",
        list_jobs,
        methods=["GET"],
        response_model=JobList,
        responses=ERROR_RESPONSES,
    )
    router.add_api_route(
        "/api/v1/jobs/{job}/runs",
        launch_run_endpoint(settings),
        methods=["POST"],
        status_code=202,
        response_model=RunAccepted,
        responses={
            **ERROR_RESPONSES,
            200: {"model": RunResult, "description": "With wait=true: the finished run"},
            404: {"model": Error, "description": "No such job in the code location"},
        },
    )
    router.add_api_route(
        "/api/v1/jobs/{job}/partitions",
        list_partitions,
        methods=["GET"],
        response_model=PartitionList,
        responses=error_responses({404: "No such job"}),
    )
    router.add_api_route(
        "/api/v1/jobs/{job}/backfills",
        launch_backfill,
        methods=["POST"],
        status_code=202,
        response_model=BackfillAccepted,
        responses=error_responses({404: "No such job"}),
    )
    return router


async def list_jobs(caller: Caller, gateway: Gateway) -> JobList:
    """The code location's jobs with their descriptions (scope ``jobs:read``)."""
    caller.require(READ_SCOPE)
    jobs = await dagster_call(gateway.dagster.list_jobs)
    return JobList(
        location=gateway.dagster.location,
        jobs=[Job(name=j.name, description=j.description) for j in jobs],
    )


def launch_run_endpoint(
    settings: GatewaySettings,
) -> Callable[..., Coroutine[Any, Any, JSONResponse]]:
    """The launch endpoint, its ``timeout`` query bounded by ``settings``."""
    timeout_query = Query(
        gt=0,
        le=settings.max_wait_timeout_seconds,
        description=f"Seconds to wait (default {settings.wait_timeout_seconds:g})",
    )

    async def launch_run(
        caller: Caller,
        gateway: Gateway,
        job: JobName,
        body: LaunchRequest | None = None,
        wait: Annotated[bool, Query(description="Wait for the run to finish")] = False,
        timeout: Annotated[float | None, timeout_query] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Launch a run of ``job`` (scope ``runs:launch:<job>`` or ``runs:launch:*``).

        202 ``{run_id, status}`` once queued; with ``wait=true``, 200 with the finished
        run's results, or 202 when it did not finish within ``timeout``.
        """
        caller.require_launch(job)
        return await launch(
            gateway,
            caller,
            job=job,
            request=body or LaunchRequest(),
            wait=wait,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )

    return launch_run


async def launch(
    gateway: GatewayState,
    caller: Principal,
    *,
    job: str,
    request: LaunchRequest,
    wait: bool,
    timeout: float | None,
    idempotency_key: str | None,
) -> JSONResponse:
    """Launch (or find again, by idempotency key) a run of ``job`` and say how it stands."""
    dagster = gateway.dagster
    # One call finds the job (404 if unknown) and its partition keys (cached briefly).
    keys = await dagster_call(dagster.partition_keys, job)
    tags = {**request.tags, SUBJECT_TAG: caller.subject, **_partition_tag(job, keys, request)}
    if idempotency_key is None:
        run_id = await dagster_call(dagster.launch, job, run_config=request.run_config, tags=tags)
        replayed = False
    else:
        run_id, replayed = await launch_once(
            dagster,
            gateway.idempotency_locks,
            subject=caller.subject,
            key=idempotency_key,
            job=job,
            request=request,
            tags=tags,
        )
    headers = {"Location": f"/api/v1/runs/{run_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    try:
        if wait:
            run = await wait_for(dagster, run_id, timeout or gateway.settings.wait_timeout_seconds)
            if run.finished:
                result = await run_result(dagster, run)
                return JSONResponse(result.model_dump(mode="json"), 200, headers)
            status = run.status
        elif not replayed and await dagster_call(dagster.queues_runs):
            status = "QUEUED"  # what a successful submit means on a queuing instance
        else:
            status = (await dagster_call(dagster.run, run_id)).status
    except GatewayError as exc:
        if exc.status != 503:
            raise
        # The run exists: never lose its id because a follow-up read failed.
        status = "UNKNOWN"
    return JSONResponse({"run_id": run_id, "status": status}, 202, headers)


def _partition_tag(job: str, keys: list[str], request: LaunchRequest) -> dict[str, str]:
    """The partition tag of a launch: required for a partitioned job, refused for others."""
    if request.partition is not None:
        if not keys:
            raise GatewayError(422, f"job {job} is not partitioned: omit partition")
        if request.partition not in keys:
            raise GatewayError(422, f"job {job} has no partition {request.partition!r}")
        return {PARTITION_TAG: request.partition}
    if keys:
        raise GatewayError(
            422,
            f"job {job} is partitioned: give a partition (e.g. {keys[-1]!r}), or "
            f"POST /api/v1/jobs/{job}/backfills with a partition_range",
        )
    return {}


async def list_partitions(caller: Caller, gateway: Gateway, job: JobName) -> PartitionList:
    """A job's partition keys, oldest first (scope ``jobs:read``)."""
    caller.require(READ_SCOPE)
    return PartitionList(
        job=job, partitions=await dagster_call(gateway.dagster.partition_keys, job)
    )


async def launch_backfill(
    caller: Caller, gateway: Gateway, job: JobName, body: BackfillRequest
) -> JSONResponse:
    """Run a partitioned job once per partition of a range (scope as for a launch).

    Dagster's backfill daemon creates the runs; follow them at the ``Location``.
    """
    caller.require_launch(job)
    keys = await dagster_call(gateway.dagster.partition_keys, job)
    if not keys:
        raise GatewayError(422, f"job {job} is not partitioned")
    span = body.partition_range
    index = {key: n for n, key in enumerate(keys)}
    for bound in (span.start, span.end):
        if bound not in index:
            raise GatewayError(422, f"job {job} has no partition {bound!r}")
    first, last = index[span.start], index[span.end]
    if first > last:
        raise GatewayError(422, "partition_range.start comes after partition_range.end")
    if last - first + 1 > MAX_BACKFILL_PARTITIONS:
        raise GatewayError(422, f"a backfill covers at most {MAX_BACKFILL_PARTITIONS} partitions")
    partitions = keys[first : last + 1]
    tags = {**body.tags, SUBJECT_TAG: caller.subject}
    backfill_id = await dagster_call(
        gateway.dagster.launch_backfill, job, partitions=partitions, tags=tags
    )
    accepted = BackfillAccepted(backfill_id=backfill_id, status="REQUESTED", partitions=partitions)
    return JSONResponse(
        accepted.model_dump(), 202, {"Location": f"/api/v1/backfills/{backfill_id}"}
    )
