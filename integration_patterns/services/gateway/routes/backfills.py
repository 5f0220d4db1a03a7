"""``/api/v1/backfills/{backfill_id}``: a backfill's status and the runs it created.

Backfills are started from their job (``POST /api/v1/jobs/{job}/backfills``, in
``jobs.py``). No ``from __future__ import annotations`` here: FastAPI must evaluate the
annotations.
"""

from typing import Annotated

from fastapi import APIRouter, Path

from integration_patterns.services.gateway.auth import READ_SCOPE
from integration_patterns.services.gateway.dependencies import Caller, Gateway
from integration_patterns.services.gateway.http_errors import dagster_call, error_responses
from integration_patterns.services.gateway.models import BackfillResult

BACKFILL_ID = r"^[a-z]{8}$"  # Dagster's make_new_backfill_id()

router = APIRouter()


@router.get(
    "/api/v1/backfills/{backfill_id}",
    response_model=BackfillResult,
    responses=error_responses({404: "No such backfill"}),
)
async def get_backfill(
    caller: Caller, gateway: Gateway, backfill_id: Annotated[str, Path(pattern=BACKFILL_ID)]
) -> BackfillResult:
    """A backfill's status and its runs so far (scope ``jobs:read``)."""
    caller.require(READ_SCOPE)
    info = await dagster_call(gateway.dagster.backfill, backfill_id)
    return BackfillResult.model_validate(
        {
            "backfill_id": info.backfill_id,
            "job": info.job_name,
            "status": info.status,
            "partitions": info.partitions,
            "runs": info.runs,
        }
    )
