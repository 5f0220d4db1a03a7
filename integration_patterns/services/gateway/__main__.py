"""``python -m integration_patterns.services.gateway --port 8080``: serve with uvicorn.

Settings come from the environment (see ``settings.py``): the JWT key, audience and issuer
are required; the Dagster webserver defaults to ``http://127.0.0.1:3000``.
"""

import sys

from integration_patterns.services.gateway.app import create_gateway_app
from integration_patterns.services.gateway.settings import GatewaySettingsError, settings_from_env
from integration_patterns.services.serve import serve, service_arguments


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read the environment and serve until interrupted."""
    parser = service_arguments("Serve the Dagster REST gateway.", default_port=8080)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env()
        app = create_gateway_app(settings)
    except GatewaySettingsError as exc:
        parser.error(str(exc))
    serve(app, args, max_header_bytes=settings.max_header_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
