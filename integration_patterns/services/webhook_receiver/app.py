"""The receiver's HTTP surface: ``POST /webhooks/{source}``, ``/healthz`` and the OpenAPI spec.

Order of checks, each before the next costs anything: unknown source (404), body over the
cap (413, counted while streaming so an oversized body is never buffered whole), signature
and replay window over the raw bytes (401, the reason never includes the expected value),
then JSON (400; a form-encoded body only from GitHub, else 415), then the insert (202
after the commit, 200 for a repeated delivery). A repeat whose body differs from the stored
one keeps the first (first write wins) but is logged and counted (``/stats``).
"""

import gc
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse
from psycopg import sql
from starlette.concurrency import run_in_threadpool

from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.services.http_limits import HeaderLimitMiddleware
from integration_patterns.services.webhook_receiver.config import (
    ReceiverSettings,
    SourceConfig,
)
from integration_patterns.services.webhook_receiver.github_events import (
    EventShapeError,
    check_event_shape,
)
from integration_patterns.services.webhook_receiver.inbox import (
    InboxRow,
    ensure_inbox,
    inbox_table,
)
from integration_patterns.services.webhook_receiver.ingress import (
    Reply,
    WebhookIngress,
    raw_headers,
)
from integration_patterns.services.webhook_receiver.signatures import VERIFIERS, SignatureError
from integration_patterns.services.webhook_receiver.writer import (
    InboxWriter,
    RowRejectedError,
    StorageUnavailableError,
)

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 200
# Headers worth keeping with the event; signatures and anything secret-bearing are left out.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-github-delivery",
    "x-github-event",
    "x-github-hook-id",
    "webhook-id",
    "webhook-timestamp",
    "svix-id",
    "svix-timestamp",
    "x-webhook-id",
)
FORM = "application/x-www-form-urlencoded"


class Rejected(Exception):
    """A delivery refused with ``status`` and a message that is safe to send back."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _reply(status: int, detail: str, headers: dict[str, str] | None = None) -> Reply:
    return status, {"detail": detail}, headers or {}


async def _read_capped(headers: dict[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Rejected(413, f"body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _form_payload(body: bytes) -> bytes:
    """The JSON in GitHub's form-encoded delivery: the one ``payload`` field."""
    try:
        fields = parse_qs(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except UnicodeDecodeError:
        raise Rejected(400, "body is not valid UTF-8 JSON") from None
    except ValueError:
        raise Rejected(400, "form body is not application/x-www-form-urlencoded") from None
    values = fields.get("payload", [])
    if len(fields) != 1 or len(values) != 1:
        raise Rejected(400, "form body must hold exactly one 'payload' field")
    return values[0].encode("utf-8")


def _parse(body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected(400, "body is not valid UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object")
    return text, payload


def _clean_id(value: Any, what: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise Rejected(400, f"{what} is missing")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise Rejected(400, f"{what} must be 1-{MAX_ID_LENGTH} printable characters")
    return text


def build_row(source: SourceConfig, headers: dict[str, str], body: bytes, now: float) -> InboxRow:
    """Verify and parse one delivery into an inbox row, or raise ``Rejected``."""
    try:
        verified = VERIFIERS[source.scheme](
            headers, body, source.keys, now, source.tolerance_seconds
        )
    except SignatureError as exc:
        log.info("source %s: signature rejected (%s)", source.name, exc)
        raise Rejected(401, "signature verification failed") from None
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == FORM:
        # GitHub's "application/x-www-form-urlencoded" webhook option; signed as sent.
        if source.scheme != "github":
            raise Rejected(415, "form-encoded bodies are accepted from GitHub only; send JSON")
        text, payload = _parse(_form_payload(body))
    else:
        text, payload = _parse(body)
    raw_id = verified.delivery_id if verified.delivery_id is not None else payload.get("id")
    delivery_id = _clean_id(raw_id, "delivery id")
    raw_type = verified.event_type if verified.event_type is not None else payload.get("type")
    event_type = None if raw_type is None else _clean_id(raw_type, "event type")
    if source.scheme == "github" and event_type is not None:
        try:
            check_event_shape(event_type, payload)
        except EventShapeError as exc:
            raise Rejected(400, str(exc)) from None
    kept = {name: headers[name].strip() for name in KEPT_HEADERS if name in headers}
    # An unsigned delivery id cannot tell a replay from a new event: the body can.
    digest = None if verified.id_signed else hashlib.sha256(body).hexdigest()
    return InboxRow(source.name, delivery_id, event_type, text, kept, digest)


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "additionalProperties": True},
            "example": {"id": "evt_1", "type": "order.created", "data": {"order_id": "o-1"}},
        }
    },
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Already received: nothing was added."},
    202: {"description": "Stored durably in the inbox."},
    400: {"description": "Body is not a JSON object or lacks a delivery id."},
    401: {"description": "Signature missing or invalid, or timestamp outside the window."},
    404: {"description": "No such source."},
    413: {"description": "Body larger than the configured cap."},
    415: {"description": "Form-encoded body from a source other than GitHub."},
    431: {"description": "Request headers larger than the configured cap."},
    503: {"description": "Inbox unavailable; retry later."},
}


def create_receiver_app(settings: ReceiverSettings, postgres: PostgresResource) -> FastAPI:
    """The ASGI app; the pool opens at start-up (lifespan) and closes at shutdown."""
    # Each writer lane holds a connection; keep one free for /healthz and start-up DDL.
    lanes = max(1, min(settings.pool_size, postgres.max_size - 1))
    writer = InboxWriter(postgres, settings.inbox_schema, workers=lanes)
    conflicts = {"count": 0}
    same_payload = (
        sql.SQL("SELECT payload = %s::jsonb FROM {} WHERE source = %s AND delivery_id = %s")
        .format(inbox_table(settings.inbox_schema))
        .as_string(None)
    )

    def repeated_with_other_body(row: InboxRow) -> bool:
        stored = postgres.fetch_all(same_payload, (row.payload_json, row.source, row.delivery_id))
        return bool(stored) and not stored[0][0]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        postgres.open()
        with postgres.get_connection() as conn:
            ensure_inbox(conn, settings.inbox_schema)
        await writer.start()
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise cost about a sixth of a busy
        # receiver's CPU walking the imported modules' objects (py-spy).
        gc.freeze()
        try:
            yield
        finally:
            await writer.stop()
            postgres.close()

    app = FastAPI(
        title="Webhook receiver",
        version="1.0.0",
        description="Verifies webhook signatures and stores deliveries in an inbox table.",
        lifespan=lifespan,
    )
    source_names = sorted(settings.sources)

    @app.get("/healthz", summary="Liveness and database reachability")
    def healthz() -> JSONResponse:  # sync: FastAPI runs it in a thread, the probe blocks
        health = postgres.health()
        status = 200 if health.ok else 503
        return JSONResponse(
            {"status": "ok" if health.ok else "degraded", "postgres": health.ok},
            status_code=status,
        )

    @app.get("/stats", summary="Counters since this process started")
    async def stats() -> dict[str, int]:
        # Repeated delivery ids whose body differed from the stored (first) one: kept out,
        # but a sender that reuses ids for different events is worth knowing about.
        return {"conflicting_redeliveries": conflicts["count"]}

    async def accept(source: str, headers: dict[str, str], chunks: AsyncIterator[bytes]) -> Reply:
        config = settings.sources.get(source)
        if config is None:
            return _reply(404, "unknown source")
        try:
            body = await _read_capped(headers, chunks, settings.max_body_bytes)
            row = build_row(config, headers, body, time.time())
        except Rejected as exc:
            return _reply(exc.status, exc.detail)
        try:
            new = await writer.store(row)
        except RowRejectedError as exc:
            return _reply(400, str(exc))
        except StorageUnavailableError:
            return _reply(503, "inbox unavailable, retry later", {"Retry-After": "5"})
        if not new and await run_in_threadpool(repeated_with_other_body, row):
            conflicts["count"] += 1
            log.warning(
                "source %s: delivery %r repeated with a different body; the first is kept",
                source,
                row.delivery_id,
            )
        status = "accepted" if new else "duplicate"
        return 202 if new else 200, {"delivery_id": row.delivery_id, "status": status}, {}

    @app.post(
        "/webhooks/{source}",
        status_code=202,
        summary="Receive one webhook delivery",
        responses=_RESPONSES,
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def receive(
        request: Request,
        # Documented as the configured names (so fuzzers reach the verifiers); an unknown
        # name still gets our 404 rather than a validation error.
        source: str = Path(json_schema_extra={"enum": source_names}),
    ) -> JSONResponse:
        # Served by ``WebhookIngress`` below; this route documents it and serves it
        # wherever the middleware is not in front (e.g. the app mounted under a prefix).
        status, body, extra = await accept(source, raw_headers(request.scope), request.stream())
        return JSONResponse(body, status_code=status, headers=extra or None)

    # Inside the header cap (added last, so outermost of the two).
    app.add_middleware(WebhookIngress, accept=accept)
    app.add_middleware(HeaderLimitMiddleware, limit=settings.max_header_bytes)
    return app
