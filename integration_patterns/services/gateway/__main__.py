"""``python -m integration_patterns.services.gateway --port 8080``: serve with uvicorn.

Settings come from the environment (see ``settings.py``): the JWT key, audience and issuer
are required; the Dagster webserver defaults to ``http://127.0.0.1:3000``.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from integration_patterns.services.gateway.app import create_app
from integration_patterns.services.gateway.settings import ConfigError, settings_from_env
from integration_patterns.services.http_limits import header_limited_protocol


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the environment and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Serve the Dagster REST gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env()
        app = create_app(settings)
    except ConfigError as exc:
        parser.error(str(exc))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        # Heads over the cap get 431 before they are buffered (uvicorn sets no limit).
        http=header_limited_protocol(settings.max_header_bytes),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
