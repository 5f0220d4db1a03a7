"""A misbehaving HTTP peer for the REST client's tests: real sockets, real uvicorn.

Why: the client's promises are about what a partner does on the wire (echoing requests,
redirecting, dripping a body, answering with nonsense headers), so the peer is a real
server on 127.0.0.1 whose every route misbehaves in one chosen way, and which counts what
actually arrived. It runs in a thread of the test process on a socket bound to port 0.
"""

import asyncio
import gzip
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TOKEN = "tok-Misbehaving-0123456789"


class MisbehavingServer:
    """One uvicorn server in a thread; ``hits`` counts requests per path (and ``key``)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        #: (path, method, Authorization header or None, body) of every request, in order
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(_app(self), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> "MisbehavingServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("misbehaving server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


async def _drip(every: float, seconds: float) -> AsyncIterator[bytes]:
    """A JSON body that takes ``seconds`` to arrive, one space every ``every`` seconds."""
    yield b'{"data": ['
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(every)
        yield b" "
    yield b"]}"


def _app(server: MisbehavingServer) -> Starlette:
    async def record(request: Request) -> bytes:
        body = await request.body()
        key = request.query_params.get("key", "")
        server.hits[f"{request.url.path}:{key}" if key else request.url.path] += 1
        server.seen.append(
            (request.url.path, request.method, request.headers.get("authorization"), body)
        )
        return body

    async def echo(request: Request) -> Response:
        """400 quoting the whole request back, as careless partners do in error bodies."""
        body = await record(request)
        text = json.dumps(  # credentials first: an excerpt of the body must include them
            {
                "body": body.decode("utf-8", "replace"),
                "authorization": request.headers.get("authorization"),
                "query": str(request.url.query),
                "headers": dict(request.headers),
            }
        )
        return Response(text, status_code=int(request.query_params.get("status", "400")))

    async def token(request: Request) -> Response:
        """A token response shaped by ``?kind=``: ok, or one of many broken shapes."""
        await record(request)
        kind = request.query_params.get("kind", "ok")
        bodies: dict[str, Any] = {
            "ok": {"access_token": TOKEN, "expires_in": 3600},
            "no_expiry": {"access_token": TOKEN},
            "nan": {"access_token": TOKEN, "expires_in": "nan"},
            "inf": {"access_token": TOKEN, "expires_in": 1e999},
            "negative": {"access_token": TOKEN, "expires_in": -5},
            "zero": {"access_token": TOKEN, "expires_in": 0},
            "word": {"access_token": TOKEN, "expires_in": "soon"},
            "bool": {"access_token": TOKEN, "expires_in": True},
            "object": {"access_token": TOKEN, "expires_in": {"s": 1}},
            "numeric_token": {"access_token": 12345678, "expires_in": 60},
            "no_token": {"expires_in": 60},
            "list": [TOKEN],
            "mac": {"access_token": TOKEN, "token_type": "mac", "expires_in": 60},
        }
        if kind == "drip":
            return StreamingResponse(_drip(0.1, 10), media_type="application/json")
        if kind == "html":
            return Response("<html>login page</html>", media_type="text/html")
        if kind == "gzip_garbage":
            return Response(b"not gzip at all", headers={"Content-Encoding": "gzip"})
        return Response(json.dumps(bodies[kind]), media_type="application/json")

    async def once_then_ok(request: Request) -> Response:
        """The first call per ``key`` answers ``?status=`` with the given headers; then 200."""
        await record(request)
        key = f"{request.url.path}:{request.query_params.get('key', '')}"
        if server.hits[key] == 1:
            headers = {
                name: request.query_params[param]
                for param, name in (
                    ("retry_after", "Retry-After"),
                    ("remaining", "X-RateLimit-Remaining"),
                    ("reset", "X-RateLimit-Reset"),
                )
                if param in request.query_params
            }
            status = int(request.query_params.get("status", "429"))
            return JSONResponse({"error": "slow down"}, status_code=status, headers=headers)
        return JSONResponse({"data": ["ok"], "next_cursor": None})

    async def status(request: Request) -> Response:
        """Always ``?code=`` with a telling body."""
        await record(request)
        code = int(request.query_params.get("code", "503"))
        return Response(f"database down: shard {code} unavailable", status_code=code)

    async def cursor_cycle(request: Request) -> Response:
        """Cursor pages a -> b -> a -> ... (or a -> a with ``?period=1``)."""
        await record(request)
        period = int(request.query_params.get("period", "2"))
        cursor = request.query_params.get("cursor", "c0")
        following = f"c{(int(cursor[1:]) + 1) % period}"
        return JSONResponse({"data": [cursor], "next_cursor": following})

    async def github(request: Request) -> Response:
        """Bare-array pages with a ``Link`` header, as GitHub's API pages (``?cycle=`` loops)."""
        await record(request)
        page, last = int(request.query_params.get("page", "1")), 4
        style = request.query_params.get("style", "absolute")
        items = [{"id": (page - 1) * 3 + i} for i in range(3)]
        links = []
        following = 1 if request.query_params.get("cycle") and page == last else page + 1
        if following <= last:
            target = f"/github?page={following}&style={style}"
            if request.query_params.get("cycle"):
                target += "&cycle=1"
            if style == "absolute":
                target = f"{server.url}{target}"
            elif style == "relative":
                target = target.lstrip("/")
            links.append(f'<{target}>; rel="next"')
        links.append(f'<{server.url}/github?page={last}>; rel="last"')
        links.insert(0, f'<{server.url}/github?page=1>; rel="first"')
        return JSONResponse(items, headers={"Link": ", ".join(links)})

    async def redirect(request: Request) -> Response:
        """``?code=`` to ``?to=`` (a path or a URL), with a JSON body that is not data."""
        await record(request)
        code = int(request.query_params.get("code", "302"))
        headers = {"Location": request.query_params["to"]} if "to" in request.query_params else {}
        if "loop" in request.query_params:
            headers = {"Location": str(request.url)}
        return JSONResponse({"data": ["from the redirect body"]}, code, headers=headers)

    async def landing(request: Request) -> Response:
        """Where redirects land: says which method, body and credentials arrived."""
        body = await record(request)
        return JSONResponse(
            {
                "data": ["landed"],
                "method": request.method,
                "body": body.decode(),
                "authorization": request.headers.get("authorization"),
            }
        )

    async def drip(request: Request) -> Response:
        """Headers at once, then one byte every ``?every=`` seconds for ``?seconds=``."""
        await record(request)
        every = float(request.query_params.get("every", "0.2"))
        seconds = float(request.query_params.get("seconds", "10"))

        return StreamingResponse(_drip(every, seconds), media_type="application/json")

    async def bad_body(request: Request) -> Response:
        """200 whose body cannot be read as promised: ``?kind=`` html, gzip or bytes."""
        await record(request)
        kind = request.query_params.get("kind", "html")
        if kind == "gzip":
            return Response(b"\x1f\x8bnot really gzip", headers={"Content-Encoding": "gzip"})
        if kind == "truncated_gzip":
            whole = gzip.compress(json.dumps({"data": list(range(1000))}).encode())
            return Response(whole[: len(whole) // 2], headers={"Content-Encoding": "gzip"})
        if kind == "bytes":
            return Response(b"\xff\xfe\x00garbage", media_type="application/json")
        return Response("<html>maintenance</html>", media_type="text/html")

    routes = [
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/once", once_then_ok, methods=["GET", "POST"]),
        Route("/status", status, methods=["GET", "POST", "PATCH", "PUT"]),
        Route("/cursor-cycle", cursor_cycle),
        Route("/github", github),
        Route("/redirect", redirect, methods=["GET", "POST", "HEAD", "PUT"]),
        Route("/landing", landing, methods=["GET", "POST", "HEAD", "PUT"]),
        Route("/drip", drip, methods=["GET", "POST"]),
        Route("/bad-body", bad_body),
    ]
    return Starlette(routes=routes)
