"""The simulator's Starlette app: token endpoint, paginated data with faults, admin routes."""

import asyncio
import base64
import binascii
import logging
import math
import secrets
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.partner_api.state import (
    API_VERSION,
    EPOCH,
    SimulatorConfig,
    SimulatorState,
    Token,
    decode_cursor,
    encode_cursor,
    record,
)


class DroppedConnection(Exception):
    """Raised mid-response so uvicorn closes the socket: the client sees a cut connection."""


class DroppedResponse(Response):
    """Promise a body, send part of it, then drop the connection."""

    async def __call__(self, scope, receive, send) -> None:  # noqa: D102
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        raise DroppedConnection("connection dropped by fault injection")


class HideDrops(logging.Filter):
    """Keeps uvicorn's log free of the tracebacks of connections dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None):
    """A JSON error body shaped like OAuth2/problem responses."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def create_simulator_app(config: SimulatorConfig | None = None) -> Starlette:
    """The ASGI app; ``app.state.sim`` holds the state for in-process inspection."""
    state = SimulatorState(config or SimulatorConfig())

    async def token(request: Request) -> Response:
        # Parsed by hand: starlette's form parser needs python-multipart, an extra dependency.
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        with state.lock:
            state.token_requests += 1
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):  # client_secret_basic
            try:
                pair = base64.b64decode(auth[6:]).decode()
                client_id, secret = (unquote(part) for part in pair.split(":", 1))
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return error(401, "invalid_client", "malformed basic credentials")
        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "only client_credentials is supported")
        cfg = state.config
        known = cfg.clients.get(str(client_id))
        if known is None or not secrets.compare_digest(known, str(secret)):
            return error(401, "invalid_client", "unknown client or wrong secret")
        scopes = str(form.get("scope") or " ".join(cfg.scopes)).split()
        if not set(scopes) <= set(cfg.scopes):
            return error(400, "invalid_scope", f"allowed scopes: {' '.join(cfg.scopes)}")
        value = secrets.token_urlsafe(24)
        with state.lock:
            state.tokens[value] = Token(str(client_id), scopes, time.monotonic() + cfg.token_ttl)
        body = {
            "access_token": value,
            "token_type": "Bearer",
            "expires_in": cfg.token_ttl,
            "scope": " ".join(scopes),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def data(request: Request) -> Response:
        now = time.monotonic()
        cfg = state.config
        with state.lock:
            state.data_requests += 1
            arrival: dict[str, Any] = {"t": time.time(), "status": None, "fault": None}
            state.arrivals.append(arrival)
            violation = state.count_request(now)
            headers = state.rate_headers(now)
        response = await serve_data(request, now, cfg, violation, headers, arrival)
        with state.lock:
            status = "dropped" if isinstance(response, DroppedResponse) else response.status_code
            state.statuses[str(status)] += 1
            arrival["status"] = status
        return response

    async def serve_data(request, now, cfg, violation, headers, arrival) -> Response:
        bearer = request.headers.get("authorization", "")
        value = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        with state.lock:
            tok = state.tokens.get(value)
            if tok is None or tok.revoked or tok.expires_at <= now:
                # Echo the token, as careless partners do: the client must mask it.
                return error(401, "invalid_token", f"token {value!r} is unknown or expired")
            if "records:read" not in tok.scopes:
                return error(403, "insufficient_scope", "records:read required")
            if violation is not None:
                retry = max(1, math.ceil(float(headers.get("X-RateLimit-Reset", "1"))))
                return error(
                    429, "rate_limited", "limit exceeded", headers | {"Retry-After": str(retry)}
                )
            fault = state.draw_fault()
            if fault == "revoke" and tok.uses == 0:
                fault = None  # revocation hits tokens in use, never a brand-new one
            tok.uses += 1
            arrival["fault"] = fault
            if fault:
                state.faults[fault] += 1
        if fault == "403":
            return error(403, "forbidden", f"client {tok.client_id} may not read with {value}")
        if fault == "revoke":
            with state.lock:
                tok.revoked = True
            return error(401, "invalid_token", "token revoked")
        if fault == "rate_limit":
            retry_after = {"Retry-After": str(cfg.retry_after_seconds)}
            return error(429, "rate_limited", "slow down", headers | retry_after)
        if fault == "rate_limit_date":
            at = math.ceil(time.time() + cfg.retry_after_seconds)
            arrival["retry_at"] = at
            date = {"Retry-After": formatdate(at, usegmt=True)}
            return error(429, "rate_limited", "slow down", headers | date)
        if fault == "server_error":
            with state.lock:
                status = state.rng.choice((500, 502, 503))
            return error(status, "server_error", "partner backend hiccup", headers)
        if fault == "drop":
            return DroppedResponse()
        if fault == "slow":
            await asyncio.sleep(cfg.slow_seconds)
        return page(request, cfg, headers)

    def page(request: Request, cfg: SimulatorConfig, headers: dict[str, str]) -> Response:
        query = request.query_params
        try:
            limit = min(int(query.get("limit", "100")), cfg.max_page_size)
            since = query.get("since")
            first = 0
            if since:
                first = max(0, math.ceil((_parse_iso(since) - EPOCH) / timedelta(minutes=1)))
            number = int(query["page"]) if "page" in query else None
            if "cursor" in query:
                offset, since = decode_cursor(query["cursor"])
            elif number is not None:
                offset = first + (number - 1) * limit
            else:
                offset = first
        except (ValueError, KeyError) as exc:
            return error(400, "invalid_request", str(exc))
        if limit < 1 or offset < 0:
            return error(400, "invalid_request", "limit must be >= 1 and page >= 1")
        end = min(offset + limit, cfg.total_records)
        items = [record(i, cfg.malformed_rate) for i in range(offset, end)]
        more = end < cfg.total_records
        cursor = encode_cursor(end, since) if more else None
        body: dict[str, Any] = {
            "data": items,
            "api_version": API_VERSION,
            "next_cursor": cursor,
            "has_more": more,
            "links": {
                "next": str(request.url.include_query_params(cursor=cursor)) if more else None
            },
        }
        if number is not None:
            body |= {"page": number, "total_pages": math.ceil((cfg.total_records - first) / limit)}
        with state.lock:
            state.pages_served += 1
            if cfg.revoke_after_pages and state.pages_served >= cfg.revoke_after_pages:
                if not state.revoked_after_pages:
                    state.revoked_after_pages = True
                    for tok in state.tokens.values():
                        tok.revoked = True
        return JSONResponse(body, headers=headers)

    async def admin_config(request: Request) -> Response:
        try:
            patch = await request.json()
            with state.lock:
                state.config.update(patch)
        except (ValueError, TypeError) as exc:
            return error(400, "invalid_config", str(exc))
        return JSONResponse({"ok": True})

    async def admin_reset(request: Request) -> Response:
        patch = await request.json() if await request.body() else {}
        with state.lock:
            state.config = SimulatorConfig()
            try:
                state.config.update(patch)
            except (ValueError, TypeError) as exc:
                return error(400, "invalid_config", str(exc))
            state.reset()
        return JSONResponse({"ok": True})

    async def admin_stats(request: Request) -> Response:
        with state.lock:
            return JSONResponse(state.stats())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "api_version": API_VERSION})

    app = Starlette(
        routes=[
            Route("/oauth/token", token, methods=["POST"]),
            Route("/v2/data", data, methods=["GET"]),
            Route("/admin/config", admin_config, methods=["POST"]),
            Route("/admin/reset", admin_reset, methods=["POST"]),
            Route("/admin/stats", admin_stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.sim = state
    return app


def _parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
