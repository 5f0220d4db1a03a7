"""``/api/v1/runs/{run_id}``: a run's status and results, and its cancellation.

No ``from __future__ import annotations`` here: FastAPI must evaluate the annotations.
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from integration_patterns.services.gateway.auth import READ_SCOPE
from integration_patterns.services.gateway.dagster_api.client import DagsterClient
from integration_patterns.services.gateway.dagster_api.results import RunInfo
from integration_patterns.services.gateway.dependencies import Caller, Gateway
from integration_patterns.services.gateway.http_errors import (
    GatewayError,
    dagster_call,
    error_responses,
)
from integration_patterns.services.gateway.models import RunAccepted, RunResult

RUN_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A status query is a few milliseconds of the webserver; a run that succeeds between two
# polls is reported up to one pause late, so the pause stays short (a 1 s cap added about
# half a second to every `wait=true` launch, most of the gap to a direct GraphQL client).
POLL_FIRST_SECONDS = 0.1
POLL_MAX_SECONDS = 0.25

RunId = Annotated[str, Path(pattern=RUN_ID)]

router = APIRouter()


async def run_result(dagster: DagsterClient, run: RunInfo) -> RunResult:
    """``run`` with the results it has recorded so far."""
    assets, failures = await dagster_call(dagster.results, run.run_id)
    return RunResult.model_validate(
        {
            "run_id": run.run_id,
            "job": run.job_name,
            "status": run.status,
            "execution_time": run.execution_time,
            "results": assets,
            "failures": failures,
        }
    )


async def wait_for(dagster: DagsterClient, run_id: str, timeout: float) -> RunInfo:
    """The run once it finished, or as it is when ``timeout`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = POLL_FIRST_SECONDS
    while True:
        run = await dagster_call(dagster.run, run_id)
        remaining = deadline - loop.time()
        if run.finished or remaining <= 0:
            return run
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 1.5, POLL_MAX_SECONDS)


@router.get(
    "/api/v1/runs/{run_id}",
    response_model=RunResult,
    responses=error_responses({404: "No such run"}),
)
async def get_run(caller: Caller, gateway: Gateway, run_id: RunId) -> RunResult:
    """A run's status and its results so far (scope ``jobs:read``)."""
    caller.require(READ_SCOPE)
    return await run_result(gateway.dagster, await dagster_call(gateway.dagster.run, run_id))


@router.post(
    "/api/v1/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunAccepted,
    responses=error_responses({404: "No such run", 409: "The run already finished"}),
)
async def cancel_run(caller: Caller, gateway: Gateway, run_id: RunId) -> RunAccepted:
    """Cancel a queued or running run (the launch scope of its job)."""
    run = await dagster_call(gateway.dagster.run, run_id)
    caller.require_launch(run.job_name)
    if run.finished:
        raise GatewayError(409, f"run already finished with status {run.status}")
    await dagster_call(gateway.dagster.cancel, run_id)
    run = await dagster_call(gateway.dagster.run, run_id)
    return RunAccepted(run_id=run_id, status=run.status)
