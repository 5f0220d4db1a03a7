"""``python -m integration_patterns.services.webhook_receiver --port 8090``: serve with uvicorn.

Settings come from the environment (see ``config.py``); the database from the same
``POSTGRES_*`` variables as the code location's ``postgres`` resource.
"""

import sys

from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.services.serve import serve, service_arguments
from integration_patterns.services.webhook_receiver.app import create_receiver_app
from integration_patterns.services.webhook_receiver.config import (
    ReceiverSettingsError,
    settings_from_env,
)


def postgres_from_env(pool_size: int) -> PostgresResource:
    """The receiver's pool, configured like the code location's ``postgres`` resource."""
    return PostgresResource.from_env(
        min_size=1,
        max_size=pool_size,
        application_name="webhook_receiver",
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the environment and serve until interrupted."""
    parser = service_arguments("Serve the webhook receiver.", default_port=8090)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env()
    except ReceiverSettingsError as exc:
        parser.error(str(exc))
    # One connection per writer lane (each holds its own) plus one for /healthz and the DDL.
    app = create_receiver_app(settings, postgres_from_env(settings.pool_size + 1))
    serve(app, args, max_header_bytes=settings.max_header_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
