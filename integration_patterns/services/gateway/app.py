"""The gateway's REST surface over the Dagster GraphQL API.

No ``from __future__ import annotations`` here: FastAPI must evaluate the endpoint
annotations, and some close over the settings.

Order of checks on every ``/api/v1`` call, each before the next costs anything: header cap
(431, in the server), body cap (413, the body is never buffered past the cap), a repeated
Authorization header (400), bearer token (401; 503 if the JWKS cannot be fetched), the
subject's rate limit (429 with ``Retry-After``), the scope (403), request validation (422),
then Dagster: unknown job or run (404), Dagster's own run config errors (422, its messages),
Dagster down (503).

Idempotency: a launch with an ``Idempotency-Key`` header records a hash of (subject, key)
as a run tag, written by Dagster together with the run itself, so there is no second store
that could disagree with the runs (a crash between "launched" and "remembered" cannot
happen). A repeat looks the tag up (``runsOrError`` filtered by tag) and answers with the
same run; a repeat with a different job or body is refused with 422. Repeats racing in one
process are serialised per key; replicas racing on one key could both launch (route by
key, or see the issue note for the PostgreSQL-table alternative).
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_patterns.services.gateway.auth import (
    READ_SCOPE,
    AuthError,
    KeysUnavailableError,
    Principal,
    TokenVerifier,
)
from integration_patterns.services.gateway.dagster_client import (
    PARTITION_TAG,
    BackfillNotFoundError,
    CancelRejectedError,
    DagsterClient,
    DagsterUnavailableError,
    JobNotFoundError,
    LaunchRejectedError,
    RunConfigInvalidError,
    RunInfo,
    RunNotFoundError,
)
from integration_patterns.services.gateway.models import (
    MAX_BACKFILL_PARTITIONS,
    BackfillAccepted,
    BackfillRequest,
    BackfillResult,
    Error,
    Health,
    Job,
    JobList,
    LaunchRequest,
    PartitionList,
    RunAccepted,
    RunResult,
)
from integration_patterns.services.gateway.ratelimit import RateLimiter, retry_after_header
from integration_patterns.services.gateway.settings import GatewaySettings
from integration_patterns.services.http_limits import HeaderLimitMiddleware

log = logging.getLogger(__name__)

IDEMPOTENCY_TAG = "gateway/idempotency_key"
REQUEST_TAG = "gateway/request_sha256"
SUBJECT_TAG = "gateway/subject"
JOB_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,199}$"
RUN_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
BACKFILL_ID = r"^[a-z]{8}$"  # Dagster's make_new_backfill_id()
# A status query is a few milliseconds of the webserver; a run that succeeds between two
# polls is reported up to one pause late, so the pause stays short (a 1 s cap added about
# half a second to every `wait=true` launch, most of the gap to a direct GraphQL client).
POLL_FIRST_SECONDS = 0.1
POLL_MAX_SECONDS = 0.25

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Repeated Authorization header"},
    401: {"model": Error, "description": "Missing, invalid or expired bearer token"},
    403: {"model": Error, "description": "The token lacks the required scope"},
    413: {"model": Error, "description": "Request body over the configured cap"},
    431: {"model": Error, "description": "Request headers over the configured cap"},
    422: {"model": Error, "description": "Invalid request, or run config rejected by Dagster"},
    429: {"model": Error, "description": "Rate limit exceeded; see Retry-After"},
    503: {"model": Error, "description": "The Dagster webserver is unavailable"},
}


class GatewayError(Exception):
    """A request refused with ``status``; ``detail`` is safe to send back."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413 before the app reads them.

    A declared Content-Length over the cap is refused at once; a chunked body is read up to
    the cap and refused as soon as it passes it, so at most ``limit`` bytes are buffered.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the cap, then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status = 413 if declared.isdigit() else 400
            await _send_json(send, status, {"detail": f"body exceeds {self.limit} bytes"})
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_json(send, 413, {"detail": f"body exceeds {self.limit} bytes"})
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock for ``key``."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _request_fingerprint(job: str, body: LaunchRequest) -> str:
    return _sha256(job, json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":")))


_bearer = HTTPBearer(auto_error=False, description="JWT issued for this API")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller, after its rate limit (400, 401, 429 or 503 otherwise)."""
    # Two Authorization headers: which one a proxy, the framework and we each read is
    # anybody's guess (RFC 9110 allows a field to repeat only if it is a list; this is not).
    if sum(name == b"authorization" for name, _ in request.scope["headers"]) > 1:
        raise GatewayError(400, "repeated Authorization header")
    if credentials is None:
        raise AuthError(401, "missing bearer token")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        if verifier.fetches_keys:
            caller = await run_in_threadpool(verifier.verify, credentials.credentials)
        else:
            caller = verifier.verify(credentials.credentials)
    except KeysUnavailableError:
        log.warning("JWKS unavailable: cannot verify tokens")
        raise GatewayError(503, "token keys unavailable", {"Retry-After": "5"}) from None
    wait = request.app.state.limiter.acquire(caller.subject)
    if wait:
        raise GatewayError(429, "rate limit exceeded", {"Retry-After": retry_after_header(wait)})
    return caller


Caller = Annotated[Principal, Depends(current_principal)]


def create_app(settings: GatewaySettings, dagster: DagsterClient | None = None) -> FastAPI:
    """Build the gateway app; ``dagster`` defaults to a client of ``settings.dagster_url``."""
    verifier = TokenVerifier(settings)
    limiter = RateLimiter(
        rate_per_minute=settings.rate_limit_per_minute, capacity=settings.bucket_size
    )
    client = dagster or DagsterClient(
        settings.dagster_url,
        location=settings.dagster_location,
        timeout=settings.dagster_timeout_seconds,
    )
    idempotency_locks = KeyedLocks()

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
    app.state.verifier = verifier
    app.state.limiter = limiter
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

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status,
            headers={"WWW-Authenticate": exc.www_authenticate},
        )

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

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

    async def run_result(run: RunInfo) -> RunResult:
        assets, failures = await dagster_call(client.results, run.run_id)
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

    async def wait_for(run_id: str, timeout: float) -> RunInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = POLL_FIRST_SECONDS
        while True:
            run = await dagster_call(client.run, run_id)
            remaining = deadline - loop.time()
            if run.finished or remaining <= 0:
                return run
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 1.5, POLL_MAX_SECONDS)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        """Liveness and readiness: 200 when the Dagster webserver answers, else 503."""
        up = await run_in_threadpool(client.ping)
        body = {"status": "ok" if up else "degraded", "dagster": "ok" if up else "unreachable"}
        return JSONResponse(body, status_code=200 if up else 503)

    @app.get("/api/v1/jobs", response_model=JobList, responses=_ERRORS)
    async def list_jobs(caller: Caller) -> JobList:
        """The code location's jobs with their descriptions (scope ``jobs:read``)."""
        caller.require(READ_SCOPE)
        jobs = await dagster_call(client.list_jobs)
        return JobList(
            location=client.location,
            jobs=[Job(name=j.name, description=j.description) for j in jobs],
        )

    @app.post(
        "/api/v1/jobs/{job}/runs",
        status_code=202,
        response_model=RunAccepted,
        responses={
            **_ERRORS,
            200: {"model": RunResult, "description": "With wait=true: the finished run"},
            404: {"model": Error, "description": "No such job in the code location"},
        },
    )
    async def launch_run(
        caller: Caller,
        job: Annotated[str, Path(pattern=JOB_NAME, description="Job name")],
        body: LaunchRequest | None = None,
        wait: Annotated[bool, Query(description="Wait for the run to finish")] = False,
        timeout: Annotated[
            float | None,
            Query(
                gt=0,
                le=settings.max_wait_timeout_seconds,
                description=f"Seconds to wait (default {settings.wait_timeout_seconds:g})",
            ),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                pattern=r"^[\x21-\x7e]+$",
                description="Same key (per token subject) gives the same run",
            ),
        ] = None,
    ) -> JSONResponse:
        """Launch a run of ``job`` (scope ``runs:launch:<job>`` or ``runs:launch:*``).

        202 ``{run_id, status}`` once queued; with ``wait=true``, 200 with the finished
        run's results, or 202 when it did not finish within ``timeout``.
        """
        caller.require_launch(job)
        request = body or LaunchRequest()
        # One call finds the job (404 if unknown) and its partition keys (cached briefly).
        keys = await dagster_call(client.partition_keys, job)
        tags = {**request.tags, SUBJECT_TAG: caller.subject}
        if request.partition is not None:
            if not keys:
                raise GatewayError(422, f"job {job} is not partitioned: omit partition")
            if request.partition not in keys:
                raise GatewayError(422, f"job {job} has no partition {request.partition!r}")
            tags[PARTITION_TAG] = request.partition
        elif keys:
            raise GatewayError(
                422,
                f"job {job} is partitioned: give a partition (e.g. {keys[-1]!r}), or "
                f"POST /api/v1/jobs/{job}/backfills with a partition_range",
            )
        replayed = False
        if idempotency_key is None:
            run_id = await dagster_call(
                client.launch, job, run_config=request.run_config, tags=tags
            )
        else:
            key_hash = _sha256(caller.subject, idempotency_key)
            fingerprint = _request_fingerprint(job, request)
            async with idempotency_locks.hold(key_hash):
                existing = await dagster_call(client.find_run_by_tag, IDEMPOTENCY_TAG, key_hash)
                if existing is not None:
                    if existing.tags.get(REQUEST_TAG) != fingerprint:
                        raise GatewayError(
                            422, "Idempotency-Key was already used with a different request"
                        )
                    run_id, replayed = existing.run_id, True
                else:
                    tags |= {IDEMPOTENCY_TAG: key_hash, REQUEST_TAG: fingerprint}
                    run_id = await dagster_call(
                        client.launch, job, run_config=request.run_config, tags=tags
                    )
        headers = {"Location": f"/api/v1/runs/{run_id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        try:
            if wait:
                run = await wait_for(run_id, timeout or settings.wait_timeout_seconds)
                if run.finished:
                    result = await run_result(run)
                    return JSONResponse(result.model_dump(mode="json"), 200, headers)
                status = run.status
            elif not replayed and await dagster_call(client.queues_runs):
                status = "QUEUED"  # what a successful submit means on a queuing instance
            else:
                status = (await dagster_call(client.run, run_id)).status
        except GatewayError as exc:
            if exc.status != 503:
                raise
            # The run exists: never lose its id because a follow-up read failed.
            status = "UNKNOWN"
        return JSONResponse({"run_id": run_id, "status": status}, 202, headers)

    @app.get(
        "/api/v1/jobs/{job}/partitions",
        response_model=PartitionList,
        responses={**_ERRORS, 404: {"model": Error, "description": "No such job"}},
    )
    async def list_partitions(
        caller: Caller, job: Annotated[str, Path(pattern=JOB_NAME, description="Job name")]
    ) -> PartitionList:
        """A job's partition keys, oldest first (scope ``jobs:read``)."""
        caller.require(READ_SCOPE)
        return PartitionList(job=job, partitions=await dagster_call(client.partition_keys, job))

    @app.post(
        "/api/v1/jobs/{job}/backfills",
        status_code=202,
        response_model=BackfillAccepted,
        responses={**_ERRORS, 404: {"model": Error, "description": "No such job"}},
    )
    async def launch_backfill(
        caller: Caller,
        job: Annotated[str, Path(pattern=JOB_NAME, description="Job name")],
        body: BackfillRequest,
    ) -> JSONResponse:
        """Run a partitioned job once per partition of a range (scope as for a launch).

        Dagster's backfill daemon creates the runs; follow them at the ``Location``.
        """
        caller.require_launch(job)
        keys = await dagster_call(client.partition_keys, job)
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
            raise GatewayError(
                422, f"a backfill covers at most {MAX_BACKFILL_PARTITIONS} partitions"
            )
        partitions = keys[first : last + 1]
        tags = {**body.tags, SUBJECT_TAG: caller.subject}
        backfill_id = await dagster_call(
            client.launch_backfill, job, partitions=partitions, tags=tags
        )
        accepted = BackfillAccepted(
            backfill_id=backfill_id, status="REQUESTED", partitions=partitions
        )
        return JSONResponse(
            accepted.model_dump(), 202, {"Location": f"/api/v1/backfills/{backfill_id}"}
        )

    @app.get(
        "/api/v1/backfills/{backfill_id}",
        response_model=BackfillResult,
        responses={**_ERRORS, 404: {"model": Error, "description": "No such backfill"}},
    )
    async def get_backfill(
        caller: Caller, backfill_id: Annotated[str, Path(pattern=BACKFILL_ID)]
    ) -> BackfillResult:
        """A backfill's status and its runs so far (scope ``jobs:read``)."""
        caller.require(READ_SCOPE)
        info = await dagster_call(client.backfill, backfill_id)
        return BackfillResult.model_validate(
            {
                "backfill_id": info.backfill_id,
                "job": info.job_name,
                "status": info.status,
                "partitions": info.partitions,
                "runs": info.runs,
            }
        )

    @app.get(
        "/api/v1/runs/{run_id}",
        response_model=RunResult,
        responses={**_ERRORS, 404: {"model": Error, "description": "No such run"}},
    )
    async def get_run(caller: Caller, run_id: Annotated[str, Path(pattern=RUN_ID)]) -> RunResult:
        """A run's status and its results so far (scope ``jobs:read``)."""
        caller.require(READ_SCOPE)
        return await run_result(await dagster_call(client.run, run_id))

    @app.post(
        "/api/v1/runs/{run_id}/cancel",
        status_code=202,
        response_model=RunAccepted,
        responses={
            **_ERRORS,
            404: {"model": Error, "description": "No such run"},
            409: {"model": Error, "description": "The run already finished"},
        },
    )
    async def cancel_run(
        caller: Caller, run_id: Annotated[str, Path(pattern=RUN_ID)]
    ) -> RunAccepted:
        """Cancel a queued or running run (the launch scope of its job)."""
        run = await dagster_call(client.run, run_id)
        caller.require_launch(run.job_name)
        if run.finished:
            raise GatewayError(409, f"run already finished with status {run.status}")
        await dagster_call(client.cancel, run_id)
        run = await dagster_call(client.run, run_id)
        return RunAccepted(run_id=run_id, status=run.status)

    return app
