"""Request-size limits shared by the receiver and the gateway: 431 for oversized headers.

uvicorn's httptools protocol sets no limit on request headers: a client can send tens of
MiB of them, all buffered (and parsed) before the app sees the request, while every other
request on the worker waits. No ASGI middleware can help, because the app is only called
once the headers are complete. ``header_limited_protocol`` is therefore a subclass of
uvicorn's own httptools protocol that counts the bytes of each request's head as they
arrive and, past the cap, answers ``431 Request Header Fields Too Large`` and closes the
connection without reading further. ``HeaderLimitMiddleware`` repeats the check inside the
app for any other server (e.g. h11, whose own cap answers a bare 400).

Bodies are capped by each app (413, counted while streaming).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEADER_BYTES = 16 * 1024


def _431(limit: int) -> tuple[bytes, bytes]:
    body = json.dumps({"detail": f"request headers exceed {limit} bytes"}).encode()
    head = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return head, body


def header_limited_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The httptools protocol of uvicorn, refusing request heads over ``max_header_bytes``.

    Pass the result as ``uvicorn.run(..., http=...)``. The count runs from the first byte
    of a request to the end of its headers; it is checked after each read is parsed, so at
    most one socket read (256 KiB) past the cap is ever buffered.
    """
    response = b"".join(_431(max_header_bytes))

    class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._in_head = True

        def data_received(self, data: bytes) -> None:
            counted = self._in_head
            if counted:
                self._head_bytes += len(data)
            super().data_received(data)
            if counted and self._in_head and self._head_bytes > max_header_bytes:
                self._refuse()

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0

        def _refuse(self) -> None:
            self._in_head = False
            if self.transport.is_closing():
                return
            self.logger.info("request headers over %d bytes: 431", max_header_bytes)
            self.transport.write(response)
            self.transport.close()

    return HeaderLimitedHttpToolsProtocol


class HeaderLimitMiddleware:
    """431 for a request whose headers (names and values) exceed ``limit`` bytes.

    Defence in depth for servers other than ``header_limited_protocol``'s: by the time an
    ASGI app runs the headers were read, but the request goes no further.
    """

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit = limit
        _, self._body = _431(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse oversized heads; pass everything else through untouched."""
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.limit:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(self._body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": self._body})
                return
        await self.app(scope, receive, send)
