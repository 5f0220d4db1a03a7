"""The receiver's hot path: ``POST /webhooks/{source}`` answered straight from ASGI.

A delivery does little work of its own (verify an HMAC, parse JSON, queue a row for the
group commit), so the framework around it dominated: FastAPI's router, dependency solving,
exception middleware and response classes cost more CPU per delivery than the delivery
(profiled with py-spy under ``bench/webhooks`` load). This middleware sits inside the app's
outer middleware (errors, header cap) and hands the raw path, headers and body stream to
the same ``accept`` function the documented FastAPI route calls, so there is one
implementation and the OpenAPI description still holds; every other request goes on to
FastAPI unchanged.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

Reply = tuple[int, dict[str, Any], dict[str, str]]
"""Status, JSON body and extra response headers of one delivery."""
Accept = Callable[[str, dict[str, str], AsyncIterator[bytes]], Awaitable[Reply]]

PREFIX = "/webhooks/"


def raw_headers(scope: Scope) -> dict[str, str]:
    """The request headers in one pass (ASGI names arrive lower-cased)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives; ``ClientDisconnect`` if the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def send_json(send: Send, reply: Reply) -> None:
    """Send one ``Reply`` as a complete JSON response."""
    status, body, extra = reply
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class WebhookIngress:
    """Answers ``POST /webhooks/<source>`` with ``accept``; passes anything else to ``app``."""

    def __init__(self, app: ASGIApp, accept: Accept) -> None:
        self.app = app
        self.accept = accept

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route by method and path only; the source name is checked by ``accept``."""
        path: str = scope.get("path", "")
        source = path[len(PREFIX) :]
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(PREFIX)
            or not source
            or "/" in source
        ):
            await self.app(scope, receive, send)
            return
        try:
            reply = await self.accept(source, raw_headers(scope), body_chunks(receive))
        except ClientDisconnect:
            return  # nobody is left to answer; nothing was stored
        await send_json(send, reply)
