"""Gateway authentication against real peers: a JWKS server, raw sockets, the token command.

Identity providers (Auth0, Okta, Keycloak) publish RS256 keys as a JWKS document and
rotate them; the gateway must pick the key by ``kid``, cache the set, pick up a rotation
and refuse a retired key, without letting made-up ``kid`` values make it call the provider
on every request. Tokens here are minted with joserfc (a third-party JOSE library), the key
set is served over HTTP by a local server that counts its fetches, and the gateway under
test is the real process (its Dagster is unreachable on purpose: a token that gets past
authentication is answered 503 "Dagster is unavailable", one that does not, 401).
"""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet, RSAKey

from devstack.gateway_server import gateway_server
from devstack.harness import free_port, serving
from devstack.raw_http import raw_request
from devstack.token import DEMO_AUDIENCE, DEMO_ISSUER, mint_token
from integration_patterns.services.gateway.auth import (
    KeysUnavailableError,
    TokenRejectedError,
    TokenVerifier,
)
from integration_patterns.services.gateway.settings import GatewaySettings, settings_from_env

SECRET = "gateway-auth-tests-" + uuid.uuid4().hex + uuid.uuid4().hex
JOBS = "/api/v1/jobs"


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "svc",
        "aud": DEMO_AUDIENCE,
        "iss": DEMO_ISSUER,
        "iat": now,
        "exp": now + 300,
        "scope": "jobs:read",
        **extra,
    }


def rs256(key: RSAKey, kid: str | None = None, **extra: Any) -> str:
    header = {"alg": "RS256", "kid": kid or key.kid}
    return jose_jwt.encode(header, claims(**extra), key)


class JwksServer:
    """A local HTTP server publishing a key set that tests can rotate; counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[RSAKey] = []
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps(KeySet(server.keys).as_dict(private=False)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    with serving(server.httpd):
        yield server


def verifier_for(url: str, *, cooldown: float = 30.0, leeway: int = 30) -> TokenVerifier:
    return TokenVerifier(
        GatewaySettings(
            jwt_jwks_url=url,
            jwt_audience=DEMO_AUDIENCE,
            jwt_issuer=DEMO_ISSUER,
            jwt_jwks_cooldown_seconds=cooldown,
            jwt_leeway_seconds=leeway,
        )
    )


def refused(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except TokenRejectedError as exc:
        return exc.status == 401
    return False


# --- JWKS ----------------------------------------------------------------------------------


def test_jwks_key_is_chosen_by_kid_and_the_set_is_cached(jwks: JwksServer) -> None:
    first, second = rsa_key("k1"), rsa_key("k2")
    jwks.keys = [first, second]
    verifier = verifier_for(jwks.url)
    for _ in range(5):
        assert verifier.verify(rs256(first)).subject == "svc"
        assert verifier.verify(rs256(second)).scopes == frozenset({"jobs:read"})
    assert jwks.fetches == 1
    # The kid chooses the key: a token signed by k1 but naming k2 fails.
    assert refused(verifier, rs256(first, kid="k2"))


def test_a_rotated_key_is_fetched_and_a_retired_key_refused(jwks: JwksServer) -> None:
    old, new = rsa_key("old"), rsa_key("new")
    jwks.keys = [old]
    verifier = verifier_for(jwks.url, cooldown=0.5)
    assert verifier.verify(rs256(old)).subject == "svc"
    jwks.keys = [new]  # the provider rotates: the old key is retired
    time.sleep(0.6)
    assert verifier.verify(rs256(new)).subject == "svc"  # unknown kid: one refetch
    assert jwks.fetches == 2
    time.sleep(0.6)
    assert refused(verifier, rs256(old))  # no longer published


def test_made_up_kids_cannot_make_the_gateway_hammer_the_provider(jwks: JwksServer) -> None:
    jwks.keys = [rsa_key("real")]
    verifier = verifier_for(jwks.url, cooldown=30)
    attacker = rsa_key("x")
    assert all(refused(verifier, rs256(attacker, kid=uuid.uuid4().hex)) for _ in range(50))
    assert jwks.fetches <= 2  # the first fetch, and at most one forced refresh


def _hs256_with(key: bytes, kid: str) -> str:
    # PyJWT and joserfc refuse to sign HS256 with a public key, so it is assembled by hand.
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT", "kid": kid}, claims())
    ]
    signing_input = b".".join(segments)
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_jwks_tokens_keep_the_algorithm_pinned(jwks: JwksServer) -> None:
    key = rsa_key("k")
    jwks.keys = [key]
    verifier = verifier_for(jwks.url)
    public_json = json.dumps(key.as_dict(private=False)).encode()
    public_pem = key.as_pem(private=False)
    assert refused(verifier, _hs256_with(public_json, "k"))  # key confusion, JWK as secret
    assert refused(verifier, _hs256_with(public_pem, "k"))  # ... and as PEM
    unsigned = pyjwt.encode(claims(), None, algorithm="none", headers={"kid": "k"})
    assert refused(verifier, unsigned)
    assert refused(verifier, "not.a.jwt")
    # Right kid, other signer.
    assert refused(verifier, rs256(rsa_key("k")))


def test_unreachable_jwks_is_unavailable_not_unauthorised() -> None:
    verifier = verifier_for(f"http://127.0.0.1:{free_port()}/jwks.json")
    with pytest.raises(KeysUnavailableError):
        verifier.verify(rs256(rsa_key("k")))


# --- leeway --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "leeway", "accepted"),
    [
        ({"exp": -2}, 0, False),  # expired 2 s ago, no skew allowed
        ({"exp": -2}, 30, True),  # ... within the default leeway
        ({"nbf": 3}, 0, False),  # valid from 3 s from now
        ({"nbf": 3}, 30, True),
        ({"exp": 60}, 0, True),  # a good token with leeway 0
    ],
)
def test_leeway_can_be_zero(extra: dict[str, int], leeway: int, accepted: bool) -> None:
    now = int(time.time())
    settings = settings_from_env(
        {
            "GATEWAY_JWT_SECRET": SECRET,
            "GATEWAY_JWT_AUDIENCE": DEMO_AUDIENCE,
            "GATEWAY_JWT_ISSUER": DEMO_ISSUER,
            "GATEWAY_JWT_LEEWAY_SECONDS": str(leeway),
        }
    )
    assert settings.jwt_leeway_seconds == leeway
    token = pyjwt.encode(claims(**{k: now + v for k, v in extra.items()}), SECRET, "HS256")
    assert refused(TokenVerifier(settings), token) is not accepted


# --- the real gateway process --------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    dead_dagster = f"http://127.0.0.1:{free_port()}"
    with gateway_server(dead_dagster, secret=SECRET) as url:
        yield url


def auth(value: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {value}")


@pytest.mark.parametrize(
    "headers",
    [
        [auth("good"), auth("good")],  # the same token twice
        [auth("good"), auth("garbage")],  # a good one first
        [auth("garbage"), auth("good")],  # a good one last
        [auth("good"), ("authorization", "Basic dXNlcjpwdw==")],  # another scheme, lower case
    ],
    ids=["same", "good-first", "good-last", "other-scheme"],
)
def test_a_repeated_authorization_header_is_400(
    gateway: str, headers: list[tuple[str, str]]
) -> None:
    good = mint_token(SECRET)
    headers = [(name, value.replace("good", good)) for name, value in headers]
    response = raw_request(gateway, "GET", JOBS, headers)
    assert response.status == 400
    assert json.loads(response.body) == {"detail": "repeated Authorization header"}
    # One header: authenticated, then Dagster (unreachable here) answers.
    assert raw_request(gateway, "GET", JOBS, [auth(good)]).status == 503


def test_the_gateway_verifies_tokens_from_a_jwks_url(jwks: JwksServer) -> None:
    key = rsa_key("gw")
    jwks.keys = [key]
    env = {"GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_JWKS_URL": jwks.url}
    with gateway_server(f"http://127.0.0.1:{free_port()}", secret="", env=env) as url:
        good = httpx.get(url + JOBS, headers={"Authorization": f"Bearer {rs256(key)}"})
        assert good.status_code == 503 and good.json() == {"detail": "Dagster is unavailable"}
        forged = rs256(rsa_key("gw"))
        bad = httpx.get(url + JOBS, headers={"Authorization": f"Bearer {forged}"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# --- the development token command ---------------------------------------------------------


def test_the_token_command_mints_what_the_configured_gateway_accepts() -> None:
    env = {
        "GATEWAY_JWT_SECRET": SECRET,
        "GATEWAY_JWT_AUDIENCE": DEMO_AUDIENCE,
        "GATEWAY_JWT_ISSUER": DEMO_ISSUER,
    }
    command = [sys.executable, "-m", "devstack.token"]
    args = ["--subject", "ci", "--scope", "jobs:read", "--scope", "runs:launch:platform_smoke"]
    result = subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    token = result.stdout.strip()
    caller = TokenVerifier(settings_from_env(env)).verify(token)
    assert caller.subject == "ci"
    assert caller.scopes == frozenset({"jobs:read", "runs:launch:platform_smoke"})
    # With keys from an identity provider it refuses, saying why.
    jwks_env = {**env, "GATEWAY_JWT_SECRET": "", "GATEWAY_JWT_JWKS_URL": "https://idp/jwks"}
    refused_run = subprocess.run(command, env=jwks_env, capture_output=True, text=True)
    assert refused_run.returncode != 0 and "identity provider" in refused_run.stderr
