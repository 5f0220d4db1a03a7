"""Gateway settings, read once from the environment at start-up.

Variables:
    GATEWAY_JWT_SECRET: HS256 shared secret (at least 32 bytes, RFC 7518 section 3.2), or
    GATEWAY_JWT_PUBLIC_KEY: PEM public key for RS256, or
    GATEWAY_JWT_JWKS_URL: the identity provider's JWKS document (Auth0, Okta, Keycloak...):
        RS256 keys chosen by the token's ``kid``. Exactly one of the three; the algorithm
        follows from which one is set and is the only one accepted, so a token cannot pick
        its own (``alg: none``, HS256 signed with the public key).
    GATEWAY_JWT_JWKS_CACHE_SECONDS: how long the fetched key set is used before it is
        fetched again (default 300).
    GATEWAY_JWT_JWKS_COOLDOWN_SECONDS: least time between fetches forced by a ``kid`` not
        in the cached set, i.e. how soon a rotated key is picked up (default 30). It bounds
        how often tokens with made-up ``kid`` values can make the gateway call the provider.
    GATEWAY_JWT_AUDIENCE: required ``aud`` claim (this API's identifier).
    GATEWAY_JWT_ISSUER: required ``iss`` claim (the token issuer).
    GATEWAY_JWT_LEEWAY_SECONDS: clock skew allowed on ``exp``/``nbf`` (default 30; 0 allows
        none).
    GATEWAY_CORS_ORIGINS: comma-separated browser origins allowed to call the API (default
        none: no CORS headers at all).
    GATEWAY_DAGSTER_URL: the Dagster webserver (default ``http://127.0.0.1:3000``).
    GATEWAY_DAGSTER_LOCATION: the code location whose jobs are exposed (default
        ``integration_patterns``); jobs of other locations are unknown to the gateway.
    GATEWAY_DAGSTER_TIMEOUT_SECONDS: per GraphQL request (default 30).
    GATEWAY_RATE_LIMIT_PER_MINUTE: requests per token subject per minute (default 120).
    GATEWAY_RATE_LIMIT_BURST: bucket size, requests allowed at once (default = per minute).
    GATEWAY_MAX_BODY_BYTES: largest request body (default 64 KiB); larger gets 413.
    GATEWAY_MAX_HEADER_BYTES: largest request head, request line and headers (default
        16 KiB); larger gets 431 and is never buffered whole.
    GATEWAY_WAIT_TIMEOUT_SECONDS: default ``timeout`` for ``wait=true`` (default 60).
    GATEWAY_MAX_WAIT_TIMEOUT_SECONDS: largest ``timeout`` a client may ask for (default 600).

Key material lives in fields excluded from ``repr`` so it never reaches a log line.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MIN_HS256_SECRET_BYTES = 32


class GatewaySettingsError(ValueError):
    """The gateway's environment is incomplete or malformed (names the variable)."""


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway app needs; build it with ``settings_from_env`` or directly."""

    jwt_audience: str
    jwt_issuer: str
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_jwks_url: str | None = None
    jwt_jwks_cache_seconds: float = 300.0
    jwt_jwks_cooldown_seconds: float = 30.0
    jwt_leeway_seconds: int = 30
    cors_origins: tuple[str, ...] = ()
    dagster_url: str = "http://127.0.0.1:3000"
    dagster_location: str = "integration_patterns"
    dagster_timeout_seconds: float = 30.0
    rate_limit_per_minute: int = 120
    rate_limit_burst: int | None = None
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 16 * 1024
    wait_timeout_seconds: float = 60.0
    max_wait_timeout_seconds: float = 600.0

    def __post_init__(self) -> None:
        keys = [bool(self.jwt_secret), bool(self.jwt_public_key), bool(self.jwt_jwks_url)]
        if sum(keys) != 1:
            raise GatewaySettingsError(
                "set exactly one of GATEWAY_JWT_SECRET, GATEWAY_JWT_PUBLIC_KEY and "
                "GATEWAY_JWT_JWKS_URL"
            )
        if self.jwt_jwks_url:
            jwks = urlsplit(self.jwt_jwks_url)
            if jwks.scheme not in ("http", "https") or not jwks.hostname:
                raise GatewaySettingsError("GATEWAY_JWT_JWKS_URL must be an http(s) URL")
        if self.jwt_leeway_seconds < 0:
            raise GatewaySettingsError("GATEWAY_JWT_LEEWAY_SECONDS must not be negative")
        if self.jwt_secret and len(self.jwt_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise GatewaySettingsError(
                f"GATEWAY_JWT_SECRET must hold at least {MIN_HS256_SECRET_BYTES} bytes"
            )
        if not self.jwt_audience or not self.jwt_issuer:
            raise GatewaySettingsError("GATEWAY_JWT_AUDIENCE and GATEWAY_JWT_ISSUER are required")
        url = urlsplit(self.dagster_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise GatewaySettingsError(
                f"GATEWAY_DAGSTER_URL must be an http(s) URL, got {self.dagster_url}"
            )
        if "*" in self.cors_origins:
            raise GatewaySettingsError("GATEWAY_CORS_ORIGINS must list origins explicitly, not '*'")
        if self.wait_timeout_seconds > self.max_wait_timeout_seconds:
            raise GatewaySettingsError(
                "GATEWAY_WAIT_TIMEOUT_SECONDS exceeds GATEWAY_MAX_WAIT_TIMEOUT_SECONDS"
            )

    @property
    def jwt_algorithm(self) -> str:
        """The one algorithm tokens may be signed with (RS256 for a public key or JWKS)."""
        return "HS256" if self.jwt_secret else "RS256"

    @property
    def bucket_size(self) -> int:
        """How many requests a subject may make at once."""
        return self.rate_limit_burst or self.rate_limit_per_minute


def _number(
    env: Mapping[str, str], name: str, default: float, kind: type = int, *, zero: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise GatewaySettingsError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0 or (value == 0 and not zero):
        raise GatewaySettingsError(
            f"{name} must be {'non-negative' if zero else 'positive'}, got {value}"
        )
    return value


def settings_from_env(env: Mapping[str, str] | None = None) -> GatewaySettings:
    """Read and validate the gateway's settings.

    Raises:
        GatewaySettingsError: a missing key or claim, or a malformed value (the message names it).
    """
    env = os.environ if env is None else env
    origins = tuple(o.strip().rstrip("/") for o in env.get("GATEWAY_CORS_ORIGINS", "").split(","))
    burst = env.get("GATEWAY_RATE_LIMIT_BURST", "").strip()
    return GatewaySettings(
        jwt_secret=env.get("GATEWAY_JWT_SECRET") or None,
        jwt_public_key=env.get("GATEWAY_JWT_PUBLIC_KEY") or None,
        jwt_jwks_url=env.get("GATEWAY_JWT_JWKS_URL", "").strip() or None,
        jwt_jwks_cache_seconds=_number(env, "GATEWAY_JWT_JWKS_CACHE_SECONDS", 300.0, float),
        jwt_jwks_cooldown_seconds=_number(
            env, "GATEWAY_JWT_JWKS_COOLDOWN_SECONDS", 30.0, float, zero=True
        ),
        jwt_audience=env.get("GATEWAY_JWT_AUDIENCE", "").strip(),
        jwt_issuer=env.get("GATEWAY_JWT_ISSUER", "").strip(),
        jwt_leeway_seconds=int(_number(env, "GATEWAY_JWT_LEEWAY_SECONDS", 30, zero=True)),
        cors_origins=tuple(o for o in origins if o),
        dagster_url=env.get("GATEWAY_DAGSTER_URL", "").strip() or "http://127.0.0.1:3000",
        dagster_location=env.get("GATEWAY_DAGSTER_LOCATION", "").strip() or "integration_patterns",
        dagster_timeout_seconds=_number(env, "GATEWAY_DAGSTER_TIMEOUT_SECONDS", 30.0, float),
        rate_limit_per_minute=int(_number(env, "GATEWAY_RATE_LIMIT_PER_MINUTE", 120)),
        rate_limit_burst=int(_number(env, "GATEWAY_RATE_LIMIT_BURST", 1)) if burst else None,
        max_body_bytes=int(_number(env, "GATEWAY_MAX_BODY_BYTES", 64 * 1024)),
        max_header_bytes=int(_number(env, "GATEWAY_MAX_HEADER_BYTES", 16 * 1024)),
        wait_timeout_seconds=_number(env, "GATEWAY_WAIT_TIMEOUT_SECONDS", 60.0, float),
        max_wait_timeout_seconds=_number(env, "GATEWAY_MAX_WAIT_TIMEOUT_SECONDS", 600.0, float),
    )
