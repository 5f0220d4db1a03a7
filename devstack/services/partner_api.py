"""The partner-API simulator (``devstack.partner_api``) served by uvicorn on its fixed port."""

import os
import sys

from devstack.harness import http_ok
from devstack.services.common import HOME, HOST, Service, log, start_service, stop_service

PARTNER_API_PORT = int(os.environ.get("PARTNER_API_PORT", "8765"))
PARTNER_API_LOG = HOME / "partner-api" / "partner-api.log"


def _partner_api_ready() -> bool:
    return http_ok(f"http://{HOST}:{PARTNER_API_PORT}/healthz")


def partner_api_up() -> None:
    """Serve the project's partner-API simulator (needs the project's Python environment)."""
    if _partner_api_ready():
        return
    log("starting the partner-API simulator")
    start_service(
        "partner-api",
        [
            sys.executable,
            "-m",
            "devstack.partner_api",
            "--host",
            HOST,
            "--port",
            str(PARTNER_API_PORT),
        ],
        PARTNER_API_LOG,
        _partner_api_ready,
        60,
    )


def partner_api_down() -> None:
    """Stop the simulator."""
    stop_service("partner-api", timeout=10)


SERVICE = Service(
    "partner-api", PARTNER_API_PORT, partner_api_up, _partner_api_ready, partner_api_down
)
