"""``python -m devstack.token`` (``make token``): a development JWT.

Prints a bearer token the local gateway accepts, signed with ``GATEWAY_JWT_SECRET`` (HS256)
for ``GATEWAY_JWT_AUDIENCE`` and ``GATEWAY_JWT_ISSUER`` (read from the environment, then
``.env``, then ``.env.example``). A gateway configured with a public key or a JWKS URL takes
tokens from its identity provider instead; this command then says so and fails.

Example::

    make token                                   # jobs:read runs:launch:*, one hour
    make token ARGS="--scope jobs:read --ttl 600 --subject ci"
    curl -H "Authorization: Bearer $(make -s token)" http://127.0.0.1:8080/api/v1/jobs
"""

import argparse
import sys
import time
import uuid

import jwt

from devstack.environment import env_defaults
from integration_patterns.services.gateway.settings import GatewaySettingsError, settings_from_env

#: the claims the demo gateway, the tests' gateways and .env.example expect
DEMO_AUDIENCE = "integration-patterns-gateway"
DEMO_ISSUER = "integration-patterns-dev"


def mint_token(
    secret: str,
    *,
    subject: str = "demo-client",
    scopes: tuple[str, ...] = ("jobs:read", "runs:launch:*"),
    audience: str = DEMO_AUDIENCE,
    issuer: str = DEMO_ISSUER,
    ttl_seconds: int = 300,
) -> str:
    """An HS256 token the gateway accepts when configured with the same secret and claims."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, mint the token and print it (nothing else) on stdout."""
    parser = argparse.ArgumentParser(description="Mint a development token for the gateway.")
    parser.add_argument("--subject", default="dev", help="the sub claim (default dev)")
    parser.add_argument(
        "--scope",
        action="append",
        help="a scope to grant; repeat for several (default: jobs:read and runs:launch:*)",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    args = parser.parse_args(argv)
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    try:
        settings = settings_from_env(env_defaults())
    except GatewaySettingsError as exc:
        parser.error(str(exc))
    if settings.jwt_secret is None:
        parser.error(
            "the gateway verifies RS256 tokens (GATEWAY_JWT_PUBLIC_KEY or GATEWAY_JWT_JWKS_URL);"
            " get a token from that identity provider"
        )
    token = mint_token(
        settings.jwt_secret,
        subject=args.subject,
        scopes=tuple(args.scope or ("jobs:read", "runs:launch:*")),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        ttl_seconds=args.ttl,
    )
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
