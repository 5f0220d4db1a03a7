"""JWT bearer authentication and per-job scopes.

A token is accepted only when it is signed with the configured key under the one pinned
algorithm (HS256 for a shared secret, RS256 for a public key or for the identity provider's
JWKS, whose key is chosen by the token's ``kid``), is inside its ``nbf``/``exp`` window
(with the configured leeway, possibly 0), and names this API in ``aud`` and the configured
issuer in ``iss``. ``sub`` identifies the caller (and keys the rate limit).

JWKS keys come from PyJWT's ``PyJWKClient``: the key set is cached for a while, and a
``kid`` it does not hold forces one refetch (a key rotation), at most once per cooldown so
made-up ``kid`` values cannot make the gateway hammer the provider. Fetching blocks, so the
app verifies JWKS tokens in its thread pool. A provider that cannot be reached while the
key is not cached gives 503 (the token may well be good), never 401.

Scopes come from the ``scope`` claim (space-separated, RFC 9068) or ``scp`` (a list):
    ``jobs:read``            list jobs, read runs and their results;
    ``runs:launch:<job>``    launch (and cancel) runs of one job;
    ``runs:launch:*``        launch (and cancel) runs of any job.

401 means "who are you?" (no token, bad signature, expired, wrong audience...): the
response carries ``WWW-Authenticate: Bearer error="invalid_token"``. 403 means "you may not
do this" (valid token, scope missing): ``error="insufficient_scope"`` names the scope
needed (RFC 6750 section 3.1). Reasons are generic on purpose; they never echo the token.
"""

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from integration_patterns.services.gateway.settings import GatewaySettings, GatewaySettingsError

READ_SCOPE = "jobs:read"
LAUNCH_ANY_SCOPE = "runs:launch:*"
REQUIRED_CLAIMS = ["exp", "sub", "aud", "iss"]


def launch_scope(job: str) -> str:
    """The scope that allows launching runs of ``job``."""
    return f"runs:launch:{job}"


class KeysUnavailableError(Exception):
    """The identity provider's key set could not be fetched (the app answers 503)."""


class TokenRejectedError(Exception):
    """The bearer token does not admit the request: 401 (not a valid token) or 403 (scope)."""

    def __init__(self, status: int, detail: str, *, scope: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scope = scope

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 challenge for the response."""
        if self.status == 403:
            return f'Bearer error="insufficient_scope", scope="{self.scope}"'
        if self.detail == "missing bearer token":
            return "Bearer"
        return 'Bearer error="invalid_token"'


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its subject and granted scopes."""

    subject: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """Raise 403 unless ``scope`` was granted."""
        if scope not in self.scopes:
            raise TokenRejectedError(403, f"token lacks scope {scope}", scope=scope)

    def require_launch(self, job: str) -> None:
        """Raise 403 unless the caller may launch runs of ``job``."""
        if LAUNCH_ANY_SCOPE not in self.scopes:
            self.require(launch_scope(job))


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return frozenset(raw)
    return frozenset()


class TokenVerifier:
    """Checks bearer tokens against the configured key, algorithm, audience and issuer."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_seconds
        self._jwks: PyJWKClient | None = None
        if settings.jwt_jwks_url:
            self._jwks = PyJWKClient(
                settings.jwt_jwks_url,
                cache_jwk_set=True,
                lifespan=settings.jwt_jwks_cache_seconds,
                cooldown_duration=settings.jwt_jwks_cooldown_seconds,
                timeout=10,
            )
            self._key: Any = None
        elif settings.jwt_public_key:
            try:
                key = load_pem_public_key(settings.jwt_public_key.encode())
            except ValueError:
                raise GatewaySettingsError(
                    "GATEWAY_JWT_PUBLIC_KEY is not a PEM public key"
                ) from None
            if not isinstance(key, RSAPublicKey):
                raise GatewaySettingsError("GATEWAY_JWT_PUBLIC_KEY must be an RSA key for RS256")
            self._key: Any = key
        else:
            self._key = settings.jwt_secret

    @property
    def fetches_keys(self) -> bool:
        """True when verifying may fetch keys over the network (run it off the event loop)."""
        return self._jwks is not None

    def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key
        except PyJWKClientConnectionError:
            raise KeysUnavailableError("identity provider keys unavailable") from None
        except (PyJWKClientError, jwt.InvalidTokenError):
            # No such kid even after a refresh, or a header that is not a JWT's.
            raise TokenRejectedError(401, "invalid token") from None
        if not isinstance(key, RSAPublicKey):
            raise TokenRejectedError(401, "invalid token")
        return key

    def verify(self, token: str) -> Principal:
        """Decode and check ``token``.

        Raises:
            TokenRejectedError: 401 with a generic reason when anything is wrong with it.
            KeysUnavailableError: the JWKS could not be fetched and holds no key for it.
        """
        key = self._signing_key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejectedError(401, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejectedError(401, "token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise TokenRejectedError(401, "token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise TokenRejectedError(401, "token issuer not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejectedError(401, f"token lacks claim {exc.claim}") from None
        except jwt.InvalidTokenError:
            # Bad signature, foreign algorithm (including "none"), malformed token.
            raise TokenRejectedError(401, "invalid token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejectedError(401, "token subject missing")
        return Principal(subject=subject, scopes=_scopes(claims))

    def verify_header(self, authorization: str | None) -> Principal:
        """Verify an ``Authorization: Bearer <token>`` header value."""
        if not authorization:
            raise TokenRejectedError(401, "missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejectedError(401, "missing bearer token")
        return self.verify(token.strip())
