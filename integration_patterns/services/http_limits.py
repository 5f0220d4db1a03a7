"""Request-size limits shared by the receiver and the gateway: 431 for oversized headers.

uvicorn's httptools protocol sets no limit on request headers: a client can send tens of
MiB of them, all buffered (and parsed) before the app sees the request, while every other
request on the worker waits. No ASGI middleware can help, because the app is only called
once the headers are complete. ``header_limited_protocol`` is therefore a subclass of
uvicorn's own httptools protocol that counts the bytes of each request's head as they
arrive and, past the cap, answers ``431 Request Header Fields Too Large`` and closes the
connection without reading further. ``HeaderLimitMiddleware`` repeats the check inside the
app for any other server (e.g. h11, whose own cap answers a bare 400).

``BodyLimitMiddleware`` caps request bodies (413) before the app reads them; the receiver
counts its body itself while streaming it to the signature check.
"""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
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
                await _send_json(send, 431, self._body, close=True)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413 before the app reads them.

    A declared Content-Length over the cap is refused at once; a chunked body is read up to
    the cap and refused as soon as it passes it, so at most ``limit`` bytes are buffered.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._body = json.dumps({"detail": f"body exceeds {limit} bytes"}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the cap, then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status = 413 if declared.isdigit() else 400
            await _send_json(send, status, self._body)
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
                await _send_json(send, 413, self._body)
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


async def _send_json(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
