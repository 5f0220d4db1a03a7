"""The gateway's REST surface over the Dagster GraphQL API: the app and what it shares.

Order of checks on every ``/api/v1`` call, each before the next costs anything: header cap
(431, in the server), body cap (413, the body is never buffered past the cap), a repeated
Authorization header (400), bearer token (401; 503 if the JWKS cannot be fetched), the
subject's rate limit (429 with ``Retry-After``), the scope (403), request validation (422),
then Dagster: unknown job or run (404), Dagster's own run config errors (422, its messages),
Dagster down (503).

The endpoints live in ``routes/`` (one module per resource), the caller and the shared state
reach them as dependencies (``dependencies.py``), refusals are mapped in ``http_errors.py``
and idempotent launches in ``idempotency.py``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from integration_patterns.services.gateway.auth import TokenRejectedError, TokenVerifier
from integration_patterns.services.gateway.dagster_api.client import DagsterClient
from integration_patterns.services.gateway.dependencies import GatewayState
from integration_patterns.services.gateway.http_errors import (
    GatewayError,
    gateway_error_response,
    token_rejected_response,
)
from integration_patterns.services.gateway.idempotency import KeyedLocks
from integration_patterns.services.gateway.ratelimit import SubjectRateLimiter
from integration_patterns.services.gateway.routes import backfills, health, jobs, runs
from integration_patterns.services.gateway.settings import GatewaySettings
from integration_patterns.services.http_limits import BodyLimitMiddleware, HeaderLimitMiddleware


def create_gateway_app(settings: GatewaySettings, dagster: DagsterClient | None = None) -> FastAPI:
    """Build the gateway app; ``dagster`` defaults to a client of ``settings.dagster_url``."""
    client = dagster or DagsterClient(
        settings.dagster_url,
        location=settings.dagster_location,
        timeout=settings.dagster_timeout_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    app = FastAPI(
        title="Integration patterns gateway",
        version="1.0.0",
        description="Launch the code location's Dagster jobs and read their results. "
        "Bearer JWT with scopes `jobs:read`, `runs:launch:<job>` or `runs:launch:*`.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = GatewayState(
        settings=settings,
        dagster=client,
        verifier=TokenVerifier(settings),
        limiter=SubjectRateLimiter(
            rate_per_minute=settings.rate_limit_per_minute, capacity=settings.bucket_size
        ),
        idempotency_locks=KeyedLocks(),
    )
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(HeaderLimitMiddleware, limit=settings.max_header_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After", "Location", "Idempotent-Replayed"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_exception_handler(TokenRejectedError, token_rejected_response)
    app.add_exception_handler(GatewayError, gateway_error_response)
    app.include_router(health.router)
    app.include_router(jobs.jobs_router(settings))
    app.include_router(backfills.router)
    app.include_router(runs.router)
    return app
