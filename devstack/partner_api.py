"""A partner-API simulator: OAuth2 client credentials, cursor-paginated records, faults.

Dev tooling, not product code: the tests, the demo and the benchmark start it as a real
HTTP server (uvicorn on 127.0.0.1) so the REST client is exercised over real sockets, never
through transport mocks. Run it with
``python -m devstack.partner_api --port 8765``.

What a partner does to us is configurable, at start (``--config '{"faults": ...}'``) and
while running (``POST /admin/config``): 429 with ``Retry-After`` in seconds or as an
HTTP-date, 500/502/503, a token revoked in the middle of pagination (401), responses slower
than the client's timeout, dropped connections and malformed records. Faults are drawn from
a seeded generator so a run is reproducible. The simulator also enforces its own sliding
window rate limit, sends ``X-RateLimit-*`` headers, and records every request that broke
the limit as a *violation*, which is what tests assert the client never causes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import math
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "2.4.0"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FAULT_KINDS = ("rate_limit", "rate_limit_date", "server_error", "revoke", "slow", "drop")
SCRIPTABLE = (*FAULT_KINDS, "403")
MALFORMED_KINDS = ("missing_id", "bad_value", "bad_timestamp", "missing_metrics")


@dataclass
class SimulatorConfig:
    """Everything a test may change; ``POST /admin/config`` takes any subset as JSON."""

    clients: dict[str, str] = field(default_factory=lambda: {"partner-demo": "partner-demo-pw"})
    scopes: list[str] = field(default_factory=lambda: ["records:read"])
    token_ttl: float = 3600.0
    total_records: int = 250
    max_page_size: int = 1000
    #: fault kind -> probability per data request (their sum must stay <= 1)
    faults: dict[str, float] = field(default_factory=dict)
    malformed_rate: float = 0.0
    retry_after_seconds: int = 1
    slow_seconds: float = 2.0
    #: server limit: at most ``rate_limit`` data requests in any ``rate_window`` seconds
    rate_limit: int = 0
    rate_window: float = 60.0
    #: arrival jitter forgiven when judging a violation (the client cannot beat the network)
    rate_tolerance: float = 0.05
    #: next data requests get these faults, in order, before any random draw
    script: list[str] = field(default_factory=list)
    #: every data request gets this fault (e.g. "403"); None turns it off
    always: str | None = None
    #: after this many data pages have been served, revoke every live token once
    revoke_after_pages: int | None = None
    seed: int = 7

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a JSON patch, refusing unknown keys and fault kinds."""
        for key, value in patch.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown setting {key!r}")
            setattr(self, key, value)
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum(self.faults.values()) > 1:
            raise ValueError("fault probabilities sum above 1")
        bad = [s for s in [*self.script, self.always] if s is not None and s not in SCRIPTABLE]
        if bad:
            raise ValueError(f"unknown scripted faults {bad}; known: {SCRIPTABLE}")


def record(index: int, malformed_rate: float) -> dict[str, Any]:
    """The partner's record number ``index``: deterministic, so tests know the full set."""
    item: dict[str, Any] = {
        "external_id": f"P{index:06d}",
        "display_name": f"Partner {index:04d}",
        "metrics": {"value": round((index * 7919) % 10000 / 100, 2), "unit": "EUR"},
        "created_at": created_at(index).isoformat().replace("+00:00", "Z"),
        "api_version": API_VERSION,
    }
    # A multiplicative hash spreads malformed items evenly instead of clustering them.
    if (index * 2654435761) % 1000 < malformed_rate * 1000:
        kind = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
        if kind == "missing_id":
            del item["external_id"]
        elif kind == "bad_value":
            item["metrics"]["value"] = "n/a"
        elif kind == "bad_timestamp":
            item["created_at"] = "yesterday-ish"
        else:
            del item["metrics"]
    return item


def created_at(index: int) -> datetime:
    """Record ``index`` was created ``index`` minutes after the epoch of the data set."""
    return EPOCH + timedelta(minutes=index)


def encode_cursor(offset: int, since: str | None) -> str:
    """An opaque cursor, as partners hand out."""
    raw = json.dumps({"o": offset, "s": since}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    """Undo :func:`encode_cursor`; ValueError for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return int(data["o"]), data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc


@dataclass
class Token:
    """One issued access token."""

    client_id: str
    scopes: list[str]
    expires_at: float
    uses: int = 0
    revoked: bool = False


class SimulatorState:
    """Config, tokens and statistics, guarded by one lock.

    Handlers run on one event loop, but admin and data calls interleave at every ``await``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget tokens and statistics; restart the fault generator from the seed."""
        self.rng = random.Random(self.config.seed)
        self.tokens: dict[str, Token] = {}
        self.window: deque[float] = deque()
        self.token_requests = 0
        self.data_requests = 0
        self.pages_served = 0
        self.revoked_after_pages = False
        self.faults = Counter[str]()
        self.statuses = Counter[str]()
        self.violations: list[dict[str, Any]] = []
        self.per_minute = Counter[str]()
        self.max_in_window = 0
        self.arrivals: deque[dict[str, Any]] = deque(maxlen=5000)

    def stats(self) -> dict[str, Any]:
        """What tests assert on (tokens included: this is a dev tool, never deployed)."""
        return {
            "token_requests": self.token_requests,
            "tokens_issued": len(self.tokens),
            "issued_tokens": list(self.tokens),
            "data_requests": self.data_requests,
            "pages_served": self.pages_served,
            "faults": dict(self.faults),
            "statuses": dict(self.statuses),
            "violations": self.violations,
            "requests_per_minute": dict(self.per_minute),
            "max_requests_in_window": self.max_in_window,
            "arrivals": list(self.arrivals),
        }

    def count_request(self, now: float) -> dict[str, Any] | None:
        """Count one data request in the sliding window; return a violation if it broke it."""
        cfg = self.config
        self.per_minute[time.strftime("%H:%M", time.gmtime(time.time()))] += 1
        horizon = now - cfg.rate_window
        while self.window and self.window[0] <= horizon:
            self.window.popleft()
        self.window.append(now)
        self.max_in_window = max(self.max_in_window, len(self.window))
        if not cfg.rate_limit:
            return None
        strict = sum(1 for t in self.window if t > horizon + cfg.rate_tolerance)
        if strict > cfg.rate_limit:
            violation = {"at": time.time(), "in_window": strict, "limit": cfg.rate_limit}
            self.violations.append(violation)
            return violation
        return None

    def rate_headers(self, now: float) -> dict[str, str]:
        """X-RateLimit-* as many partners send them; Reset is seconds until a slot frees."""
        cfg = self.config
        if not cfg.rate_limit:
            return {}
        remaining = max(0, cfg.rate_limit - len(self.window))
        reset = self.window[0] + cfg.rate_window - now if self.window else 0.0
        return {
            "X-RateLimit-Limit": str(cfg.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{max(0.0, reset):.3f}",
        }

    def draw_fault(self) -> str | None:
        """The fault for this data request: scripted first, then the seeded draw."""
        cfg = self.config
        if cfg.always:
            return cfg.always
        if cfg.script:
            return cfg.script.pop(0)
        roll, edge = self.rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += cfg.faults.get(kind, 0.0)
            if roll < edge:
                return kind
        return None


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


class _HideDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None):
    """A JSON error body shaped like OAuth2/problem responses."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def create_app(config: SimulatorConfig | None = None) -> Starlette:
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


def main(argv: list[str] | None = None) -> None:
    """Serve the simulator until interrupted."""
    parser = argparse.ArgumentParser(description="Partner-API simulator (dev tooling).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--config", default="{}", help="JSON patch of SimulatorConfig")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    config = SimulatorConfig()
    # The code location's credentials (from .env) are accepted besides the demo client.
    client_id, secret = (
        os.environ.get("PARTNER_API_CLIENT_ID"),
        os.environ.get("PARTNER_API_CLIENT_SECRET"),
    )
    if client_id and secret:
        config.clients[client_id] = secret
    config.update(json.loads(args.config))
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


class SimulatorProcess:
    """The simulator as a real subprocess on a free port, for tests, demo and benchmarks.

    Example:
        ```python
        with SimulatorProcess(config={"total_records": 50}) as sim:
            sim.reset(faults={"rate_limit": 0.2})
            httpx.get(f"{sim.url}/v2/data")
            assert sim.stats()["violations"] == []
        ```
    """

    def __init__(self, *, port: int | None = None, config: dict[str, Any] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: applied under every reset, e.g. the test's client credentials
        self.base_config = dict(config or {})
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="partner_api_", suffix=".log", delete=False)

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        """Start uvicorn and wait until ``/healthz`` answers; fail with the log otherwise."""
        cmd = [sys.executable, "-m", "devstack.partner_api"]
        cmd += ["--port", str(self.port), "--config", json.dumps(self.base_config)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        with open(self._log.name) as log:
            output = log.read()
        self.stop()
        raise RuntimeError(f"partner-API simulator did not start on {self.url}:\n{output}")

    def stop(self) -> None:
        """Terminate the process (kill it if it does not stop within 5 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def reset(self, **config: Any) -> None:
        """Default config + ``base_config`` + ``config``; tokens and statistics cleared."""
        self._admin("reset", {**self.base_config, **config})

    def configure(self, **config: Any) -> None:
        """Change settings now, keeping tokens and statistics."""
        self._admin("config", config)

    def stats(self) -> dict[str, Any]:
        """The simulator's counters (see ``SimulatorState.stats``)."""
        response = httpx.get(f"{self.url}/admin/stats", timeout=5.0)
        response.raise_for_status()
        return response.json()

    def _admin(self, what: str, body: dict[str, Any]) -> None:
        response = httpx.post(f"{self.url}/admin/{what}", json=body, timeout=5.0)
        if response.status_code != 200:
            raise ValueError(f"simulator refused {what}: {response.text}")


def free_port() -> int:
    """A local TCP port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
