"""What the gateway's endpoints depend on: the shared state and the verified caller.

No ``from __future__ import annotations`` here: FastAPI must evaluate the annotations.
"""

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from integration_patterns.services.gateway.auth import (
    KeysUnavailableError,
    Principal,
    TokenRejectedError,
    TokenVerifier,
)
from integration_patterns.services.gateway.dagster_api.client import DagsterClient
from integration_patterns.services.gateway.http_errors import GatewayError
from integration_patterns.services.gateway.idempotency import KeyedLocks
from integration_patterns.services.gateway.ratelimit import SubjectRateLimiter, retry_after_header
from integration_patterns.services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayState:
    """What every request of one app shares; kept on ``app.state.gateway``."""

    settings: GatewaySettings
    dagster: DagsterClient
    verifier: TokenVerifier
    limiter: SubjectRateLimiter
    idempotency_locks: KeyedLocks


async def gateway_state(request: Request) -> GatewayState:
    """The state of the app serving ``request`` (async: a sync one would cost a thread hop)."""
    return request.app.state.gateway


Gateway = Annotated[GatewayState, Depends(gateway_state)]

_bearer = HTTPBearer(auto_error=False, description="JWT issued for this API")


async def current_principal(
    request: Request,
    gateway: Gateway,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller, after its rate limit (400, 401, 429 or 503 otherwise)."""
    # Two Authorization headers: which one a proxy, the framework and we each read is
    # anybody's guess (RFC 9110 allows a field to repeat only if it is a list; this is not).
    if sum(name == b"authorization" for name, _ in request.scope["headers"]) > 1:
        raise GatewayError(400, "repeated Authorization header")
    if credentials is None:
        raise TokenRejectedError(401, "missing bearer token")
    verifier = gateway.verifier
    try:
        if verifier.fetches_keys:
            caller = await run_in_threadpool(verifier.verify, credentials.credentials)
        else:
            caller = verifier.verify(credentials.credentials)
    except KeysUnavailableError:
        log.warning("JWKS unavailable: cannot verify tokens")
        raise GatewayError(503, "token keys unavailable", {"Retry-After": "5"}) from None
    wait = gateway.limiter.acquire(caller.subject)
    if wait:
        raise GatewayError(429, "rate limit exceeded", {"Retry-After": retry_after_header(wait)})
    return caller


Caller = Annotated[Principal, Depends(current_principal)]
