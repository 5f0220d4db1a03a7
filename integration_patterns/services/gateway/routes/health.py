"""``/healthz``: liveness and readiness of the gateway.

No ``from __future__ import annotations`` here: FastAPI must evaluate the annotations.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integration_patterns.services.gateway.dependencies import Gateway
from integration_patterns.services.gateway.models import HealthReport

router = APIRouter()


@router.get("/healthz", response_model=HealthReport, responses={503: {"model": HealthReport}})
async def healthz(gateway: Gateway) -> JSONResponse:
    """Liveness and readiness: 200 when the Dagster webserver answers, else 503."""
    up = await run_in_threadpool(gateway.dagster.ping)
    body = {"status": "ok" if up else "degraded", "dagster": "ok" if up else "unreachable"}
    return JSONResponse(body, status_code=200 if up else 503)
