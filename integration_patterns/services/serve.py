"""Serving the project's ASGI services with uvicorn, the same way for each.

Both services take ``--host``, ``--port``, ``--log-level`` and ``--access-log`` and run
behind uvicorn's httptools protocol with the header cap of ``http_limits`` (uvicorn itself
sets none).
"""

import argparse

import uvicorn
from starlette.types import ASGIApp

from integration_patterns.services.http_limits import header_limited_protocol


def service_arguments(description: str, *, default_port: int) -> argparse.ArgumentParser:
    """A command-line parser with the options every service takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def serve(app: ASGIApp, args: argparse.Namespace, *, max_header_bytes: int) -> None:
    """Serve ``app`` until interrupted, as ``args`` (from ``service_arguments``) say."""
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        # Heads over the cap get 431 before they are buffered (uvicorn sets no limit).
        http=header_limited_protocol(max_header_bytes),
        h11_max_incomplete_event_size=max_header_bytes,
    )
