"""``python -m devstack.partner_api --port 8765``: serve the simulator until interrupted."""

import argparse
import json
import logging
import os

import uvicorn

from devstack.partner_api.app import HideDrops, create_simulator_app
from devstack.partner_api.state import SimulatorConfig


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
    logging.getLogger("uvicorn.error").addFilter(HideDrops())
    uvicorn.run(
        create_simulator_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
