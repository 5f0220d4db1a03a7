"""The API gateway as a uvicorn subprocess on a free port, in front of a Dagster webserver."""

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from devstack import harness
from devstack.environment import PROJECT, env_defaults
from devstack.token import DEMO_AUDIENCE, DEMO_ISSUER


@contextmanager
def gateway_server(
    dagster_url: str,
    *,
    secret: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serve the gateway pointed at ``dagster_url``; yield its URL once it answers.

    It accepts HS256 tokens signed with ``secret`` for the demo audience and issuer
    (``devstack.token.mint_token``). The default wait is generous: importing the app takes
    15 s and more on a loaded machine.
    """
    port = port or harness.free_port()
    full_env = {
        **env_defaults(),
        "GATEWAY_JWT_SECRET": secret,
        "GATEWAY_JWT_AUDIENCE": DEMO_AUDIENCE,
        "GATEWAY_JWT_ISSUER": DEMO_ISSUER,
        "GATEWAY_DAGSTER_URL": dagster_url,
        **(env or {}),
    }
    url = f"http://{harness.HOST}:{port}"
    command = [sys.executable, "-m", "integration_patterns.services.gateway", "--port", str(port)]
    with harness.running(
        "gateway",
        command,
        ready=lambda: harness.http_ok(f"{url}/openapi.json", timeout=2),
        timeout=timeout,
        env=full_env,
        cwd=PROJECT,
    ):
        yield url
