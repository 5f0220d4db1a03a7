"""How the gateway refuses a request: one error type, its documented statuses, its handlers.

Every refusal is JSON ``{"detail": ...}``. Token refusals (401/403) carry the RFC 6750
``WWW-Authenticate`` challenge; Dagster's failures are mapped to statuses here, in one
place, so no endpoint parses a message.
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integration_patterns.services.gateway.auth import TokenRejectedError
from integration_patterns.services.gateway.dagster_api.errors import (
    BackfillNotFoundError,
    CancelRejectedError,
    DagsterUnavailableError,
    JobNotFoundError,
    LaunchRejectedError,
    RunConfigInvalidError,
    RunNotFoundError,
)
from integration_patterns.services.gateway.models import Error

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Repeated Authorization header"},
    401: {"model": Error, "description": "Missing, invalid or expired bearer token"},
    403: {"model": Error, "description": "The token lacks the required scope"},
    413: {"model": Error, "description": "Request body over the configured cap"},
    431: {"model": Error, "description": "Request headers over the configured cap"},
    422: {"model": Error, "description": "Invalid request, or run config rejected by Dagster"},
    429: {"model": Error, "description": "Rate limit exceeded; see Retry-After"},
    503: {"model": Error, "description": "The Dagster webserver is unavailable"},
}


def error_responses(route_errors: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The statuses every ``/api/v1`` call may answer, plus the route's own ones."""
    own = {status: {"model": Error, "description": text} for status, text in route_errors.items()}
    return {**ERROR_RESPONSES, **own}


class GatewayError(Exception):
    """A request refused with ``status``; ``detail`` is safe to send back."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers


async def gateway_error_response(_: Request, exc: Exception) -> JSONResponse:
    """The handler for ``GatewayError``."""
    assert isinstance(exc, GatewayError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


async def token_rejected_response(_: Request, exc: Exception) -> JSONResponse:
    """The handler for ``TokenRejectedError``: its status with the bearer challenge."""
    assert isinstance(exc, TokenRejectedError)
    return JSONResponse(
        {"detail": exc.detail},
        status_code=exc.status,
        headers={"WWW-Authenticate": exc.www_authenticate},
    )


async def dagster_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking Dagster call in the thread pool, mapping its errors to statuses."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except (JobNotFoundError, RunNotFoundError, BackfillNotFoundError) as exc:
        raise GatewayError(404, str(exc)) from None
    except RunConfigInvalidError as exc:
        detail = [
            {
                "type": "dagster_run_config",
                "loc": ["body", "run_config", *e["path"]],
                "msg": e["message"],
                "reason": e["reason"],
            }
            for e in exc.errors
        ]
        raise GatewayError(422, detail) from None
    except LaunchRejectedError as exc:
        raise GatewayError(409 if exc.kind.endswith("Conflict") else 422, str(exc)) from None
    except CancelRejectedError as exc:
        raise GatewayError(409, str(exc)) from None
    except DagsterUnavailableError as exc:
        log.warning("dagster unavailable: %s", exc)
        raise GatewayError(503, "Dagster is unavailable", {"Retry-After": "5"}) from None
