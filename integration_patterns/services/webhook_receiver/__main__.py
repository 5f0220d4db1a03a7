"""``python -m integration_patterns.services.webhook_receiver --port 8090``: serve with uvicorn.

Settings come from the environment (see ``config.py``); the database from the same
``POSTGRES_*`` variables as the code location's ``postgres`` resource.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.services.http_limits import header_limited_protocol
from integration_patterns.services.webhook_receiver.app import create_app
from integration_patterns.services.webhook_receiver.config import ConfigError, settings_from_env


def postgres_from_env(pool_size: int) -> PostgresResource:
    """The receiver's pool, configured like the code location's ``postgres`` resource."""
    return PostgresResource.from_env(
        min_size=1,
        max_size=pool_size,
        application_name="webhook_receiver",
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the environment and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Serve the webhook receiver.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env()
    except ConfigError as exc:
        parser.error(str(exc))
    # One connection per writer lane (each holds its own) plus one for /healthz and the DDL.
    app = create_app(settings, postgres_from_env(settings.pool_size + 1))
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
