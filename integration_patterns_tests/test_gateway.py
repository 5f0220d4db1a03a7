"""The REST gateway against a real Dagster webserver and daemon for this code location.

A module fixture starts a Dagster webserver and daemon once (PostgreSQL run storage in a
database of its own, the queued run coordinator from dagster.yaml, sensors and schedules
stopped), then the gateway with uvicorn in front of it. Runs launched here are real runs of
``platform_smoke``; the tests that do not need one finished cancel theirs while queued.
"""

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.dagster_graphql import cancel_unfinished_runs
from devstack.dagster_stack import dagster_stack
from devstack.demo_gateway import run_demo
from devstack.gateway_server import gateway_server
from devstack.token import DEMO_AUDIENCE, DEMO_ISSUER, mint_token
from integration_patterns.services.gateway.auth import TokenRejectedError, TokenVerifier
from integration_patterns.services.gateway.ratelimit import SubjectRateLimiter
from integration_patterns.services.gateway.settings import (
    GatewaySettings,
    GatewaySettingsError,
    settings_from_env,
)

SECRET = "gateway-tests-" + uuid.uuid4().hex + uuid.uuid4().hex
ALLOWED_ORIGIN = "https://ops.example.com"
ALL_SCOPES = ("jobs:read", "runs:launch:*")
SMOKE = "/api/v1/jobs/platform_smoke/runs"


def token(
    *,
    subject: str = "tests",
    scopes: tuple[str, ...] = ALL_SCOPES,
    secret: str = SECRET,
    **claims: Any,
) -> str:
    """A token the module's gateways accept, unless ``claims`` or ``secret`` spoil it."""
    if not claims:
        return mint_token(secret, subject=subject, scopes=scopes)
    now = int(time.time())
    payload = {
        "sub": subject,
        "aud": DEMO_AUDIENCE,
        "iss": DEMO_ISSUER,
        "iat": now,
        "exp": now + 300,
        "scope": " ".join(scopes),
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def dagster_url() -> Iterator[str]:
    # Storage of its own: a daemon runs whatever is queued in the storage it watches, and
    # others' runs filling the queue (or dying with this stack) would make tests flaky. The
    # name is this session's alone: a second checkout running these tests at the same time
    # once cancelled this one's runs. Sensors and schedules stopped: this daemon only
    # dequeues the tests' runs.
    database = f"dagster_gateway_tests_{uuid.uuid4().hex[:10]}"
    stack = dagster_stack(database=database, drop_after=True, automation=False)
    with stack as url:
        yield url


@pytest.fixture(scope="module")
def gateway(dagster_url: str) -> Iterator[str]:
    env = {
        "GATEWAY_CORS_ORIGINS": ALLOWED_ORIGIN,
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "100000",
        "GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    with gateway_server(dagster_url, secret=SECRET, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def small_gateway(dagster_url: str) -> Iterator[str]:
    """A second gateway process: 3 requests per subject per minute, 2 KiB bodies."""
    env = {
        "GATEWAY_RATE_LIMIT_PER_MINUTE": "3",
        "GATEWAY_RATE_LIMIT_BURST": "3",
        "GATEWAY_MAX_BODY_BYTES": "2048",
    }
    with gateway_server(dagster_url, secret=SECRET, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def api(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, headers=bearer(token()), timeout=200) as client:
        yield client


def wait_finished(api: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/api/v1/runs/{run_id}").json()
        if body["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def launch_and_cancel(api: httpx.Client, *, url: str = SMOKE, **kwargs: Any) -> httpx.Response:
    """Launch a run (platform_smoke by default) and cancel it at once: no run worker."""
    response = api.post(url, **kwargs)
    if response.status_code == 202:
        api.post(f"/api/v1/runs/{response.json()['run_id']}/cancel")
    return response


# --- the happy path ------------------------------------------------------------------------


def test_healthz_and_docs(gateway: str) -> None:
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok", "dagster": "ok"}
    assert httpx.get(f"{gateway}/docs").status_code == 200
    paths = httpx.get(f"{gateway}/openapi.json").json()["paths"]
    assert {"/api/v1/jobs", "/api/v1/jobs/{job}/runs", "/api/v1/runs/{run_id}"} <= set(paths)


def test_lists_the_locations_jobs_with_descriptions(api: httpx.Client) -> None:
    response = api.get("/api/v1/jobs")
    assert response.status_code == 200
    body = response.json()
    assert body["location"] == "integration_patterns"
    jobs = {job["name"]: job["description"] for job in body["jobs"]}
    assert jobs["platform_smoke"] == "Probe every external service through its resource."
    assert not any(name.startswith("__") for name in jobs)  # Dagster's hidden asset jobs


def test_launch_with_wait_returns_the_runs_materialization_metadata(api: httpx.Client) -> None:
    response = api.post(SMOKE, params={"wait": "true", "timeout": 150}, json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "SUCCESS", body["failures"]
    assert body["job"] == "platform_smoke"
    assert body["execution_time"] > 0
    health = body["results"]["service_health"]
    assert health["asset_key"] == ["service_health"]
    for service in ("postgresql", "mongodb", "kafka", "rabbitmq"):
        assert isinstance(health["metadata"][f"{service}_latency_ms"], int | float)
    assert isinstance(health["metadata"]["postgres_pool"], dict)  # JSON metadata, decoded
    assert response.headers["location"] == f"/api/v1/runs/{body['run_id']}"
    # The same results are readable later by run id.
    again = api.get(response.headers["location"]).json()
    assert again["results"] == body["results"] and again["status"] == "SUCCESS"
    # A finished run cannot be cancelled.
    assert api.post(f"/api/v1/runs/{body['run_id']}/cancel").status_code == 409


def test_launch_without_wait_is_queued_and_can_be_cancelled(api: httpx.Client) -> None:
    response = api.post(SMOKE, json={"tags": {"team": "gateway-tests"}})
    assert response.status_code == 202
    assert response.json()["status"] == "QUEUED"  # the instance queues runs (dagster.yaml)
    assert api.post(f"/api/v1/runs/{response.json()['run_id']}/cancel").status_code == 202
    # wait=true that times out before the run finishes: 202 with the status it had.
    response = api.post(SMOKE, params={"wait": "true", "timeout": 0.3}, json={})
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert response.json()["status"] in ("QUEUED", "STARTING", "STARTED")
    cancel = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancel.status_code == 202 and cancel.json()["run_id"] == run_id
    assert wait_finished(api, run_id)["status"] == "CANCELED"


# --- errors from Dagster and from validation -----------------------------------------------


def test_unknown_job_is_404(api: httpx.Client) -> None:
    response = api.post("/api/v1/jobs/no_such_job_anywhere/runs", json={})
    assert response.status_code == 404
    assert "no_such_job_anywhere" in response.json()["detail"]


def test_bad_run_config_is_422_with_dagsters_message(api: httpx.Client) -> None:
    response = api.post(SMOKE, json={"run_config": {"bogus_section": {"x": 1}}})
    assert response.status_code == 422
    (issue,) = response.json()["detail"]
    assert issue["type"] == "dagster_run_config"
    assert issue["reason"] == "FIELD_NOT_DEFINED"
    assert 'Received unexpected config entry "bogus_section"' in issue["msg"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"run_config": {}, "unexpected": 1}, "unexpected"),  # unknown field
        ({"tags": {"dagster/priority": "9"}}, "reserved prefix"),  # system tag forged
        ({"tags": {"gateway/idempotency_key": "x"}}, "reserved prefix"),  # our tag forged
        ({"run_config": "not an object"}, "run_config"),  # wrong type
    ],
)
def test_invalid_request_bodies_are_422_with_details(
    api: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    response = api.post(SMOKE, json=body)
    assert response.status_code == 422
    assert needle in response.text


def test_run_ids_are_validated_and_unknown_runs_are_404(api: httpx.Client) -> None:
    assert api.get("/api/v1/runs/not-a-run-id").status_code == 422
    assert api.get(f"/api/v1/runs/{uuid.uuid4()}").status_code == 404
    assert api.post(f"/api/v1/runs/{uuid.uuid4()}/cancel").status_code == 404


def test_dagster_down_is_503_with_retry_after_not_a_crash(free_port: int) -> None:
    with gateway_server(f"http://127.0.0.1:{free_port}", secret=SECRET) as url:
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503 and health.json()["dagster"] == "unreachable"
        response = httpx.get(f"{url}/api/v1/jobs", headers=bearer(token()))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {"detail": "Dagster is unavailable"}


def test_body_over_the_cap_is_413(small_gateway: str) -> None:
    headers = bearer(token(subject=f"body-{uuid.uuid4()}"))
    big = {"run_config": {"pad": "x" * 4096}}
    response = httpx.post(f"{small_gateway}{SMOKE}", json=big, headers=headers)
    assert response.status_code == 413
    # Chunked, no Content-Length: counted while streaming.
    chunks = (json.dumps(big).encode()[i : i + 512] for i in range(0, 5000, 512))
    streamed = httpx.post(
        f"{small_gateway}{SMOKE}",
        content=chunks,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers


# --- idempotency ---------------------------------------------------------------------------


def test_idempotency_key_gives_the_same_run_even_across_gateway_processes(
    api: httpx.Client, small_gateway: str
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = api.post(SMOKE, headers=key, json={"tags": {"order": "42"}})
    assert first.status_code == 202
    run_id = first.json()["run_id"]
    try:
        again = api.post(SMOKE, headers=key, json={"tags": {"order": "42"}})
        assert again.json()["run_id"] == run_id
        assert again.headers["idempotent-replayed"] == "true"
        # The mapping is in Dagster's run storage, not in the process: another gateway agrees.
        other = httpx.post(
            f"{small_gateway}{SMOKE}",
            headers={**key, **bearer(token())},
            json={"tags": {"order": "42"}},
        )
        assert other.json()["run_id"] == run_id
        # The same key with a different request is refused, not silently replayed.
        changed = api.post(SMOKE, headers=key, json={"tags": {"order": "43"}})
        assert changed.status_code == 422
        assert "different request" in changed.json()["detail"]
        # Keys are scoped per subject: another client's identical key is its own run.
        theirs = launch_and_cancel(
            api,
            headers={**key, **bearer(token(subject="someone-else"))},
            json={"tags": {"order": "42"}},
        )
        assert theirs.status_code == 202 and theirs.json()["run_id"] != run_id
    finally:
        api.post(f"/api/v1/runs/{run_id}/cancel")


# --- authentication and scopes -------------------------------------------------------------

_WRONG_SECRET = "x" * 40


@pytest.mark.parametrize(
    ("make_token", "detail"),
    [
        # expired (beyond the 30 s leeway)
        (lambda: token(exp=int(time.time()) - 120), "token expired"),
        # not valid yet
        (lambda: token(nbf=int(time.time()) + 600), "token not yet valid"),
        # signed with another key
        (lambda: token(secret=_WRONG_SECRET, exp=int(time.time()) + 60), "invalid token"),
        # another API's token
        (lambda: token(aud="some-other-api"), "token audience not accepted"),
        # another issuer
        (lambda: token(iss="https://evil.example.com"), "token issuer not accepted"),
        # no expiry at all
        (lambda: token(exp=None), "token lacks claim exp"),
        # unsigned: alg none
        (
            lambda: jwt.encode(
                {"sub": "x", "aud": DEMO_AUDIENCE, "iss": DEMO_ISSUER, "exp": time.time() + 60},
                None,
                algorithm="none",
            ),
            "invalid token",
        ),
        # garbage
        (lambda: "not.a.jwt", "invalid token"),
    ],
    ids=["expired", "nbf", "wrong-key", "audience", "issuer", "no-exp", "alg-none", "garbage"],
)
def test_bad_tokens_are_401(gateway: str, make_token: Any, detail: str) -> None:
    response = httpx.get(f"{gateway}/api/v1/jobs", headers=bearer(make_token()))
    assert response.status_code == 401
    assert response.json()["detail"] == detail
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_missing_token_is_401(gateway: str) -> None:
    response = httpx.post(f"{gateway}{SMOKE}", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "scopes", "needed"),
    [
        ("GET", "/api/v1/jobs", ("runs:launch:*",), "jobs:read"),
        ("POST", SMOKE, ("jobs:read",), "runs:launch:platform_smoke"),
        # a launch scope for another job does not cover this one
        ("POST", SMOKE, ("runs:launch:customer_enrichment",), "runs:launch:platform_smoke"),
        ("GET", f"/api/v1/runs/{uuid.uuid4()}", ("runs:launch:*",), "jobs:read"),
    ],
)
def test_missing_scope_is_403(
    gateway: str, method: str, path: str, scopes: tuple[str, ...], needed: str
) -> None:
    response = httpx.request(
        method, f"{gateway}{path}", headers=bearer(token(scopes=scopes)), json={}
    )
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{needed}"'
    )


def test_a_job_scope_launches_that_job(gateway: str) -> None:
    with httpx.Client(
        base_url=gateway, headers=bearer(token(scopes=("jobs:read", "runs:launch:platform_smoke")))
    ) as client:
        assert launch_and_cancel(client, json={}).status_code == 202


def test_rs256_public_key_pins_the_algorithm() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(
        GatewaySettings(jwt_public_key=public_pem, jwt_audience="api", jwt_issuer="idp")
    )
    claims = {"sub": "svc", "aud": "api", "iss": "idp", "exp": int(time.time()) + 60}
    good = jwt.encode({**claims, "scope": "jobs:read"}, private, algorithm="RS256")
    assert verifier.verify(good).scopes == frozenset({"jobs:read"})
    # Key confusion: an HS256 token "signed" with the public key must not pass.
    # (PyJWT refuses to produce one, so it is assembled by hand.)
    signing_input = b".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    )
    signature = hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    with pytest.raises(TokenRejectedError) as refused:
        verifier.verify(forged)
    assert refused.value.status == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenRejectedError):
        verifier.verify(jwt.encode(claims, other, algorithm="RS256"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "exactly one of"),  # no key at all
        ({"GATEWAY_JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"GATEWAY_JWT_SECRET": "s" * 32, "GATEWAY_JWT_PUBLIC_KEY": "pem"}, "exactly one of"),
        ({"GATEWAY_JWT_SECRET": "s" * 32, "GATEWAY_CORS_ORIGINS": "*"}, "explicitly"),
        ({"GATEWAY_JWT_SECRET": "s" * 32, "GATEWAY_RATE_LIMIT_PER_MINUTE": "0"}, "positive"),
        ({"GATEWAY_JWT_SECRET": "s" * 32, "GATEWAY_DAGSTER_URL": "ftp://x"}, "http(s)"),
    ],
)
def test_settings_refuse_unsafe_configuration(env: dict[str, str], message: str) -> None:
    base = {"GATEWAY_JWT_AUDIENCE": "api", "GATEWAY_JWT_ISSUER": "idp"}
    with pytest.raises(GatewaySettingsError, match=re.escape(message)):
        settings_from_env({**base, **env})


def test_secret_never_appears_in_settings_repr() -> None:
    settings = settings_from_env(
        {"GATEWAY_JWT_SECRET": SECRET, "GATEWAY_JWT_AUDIENCE": "a", "GATEWAY_JWT_ISSUER": "i"}
    )
    assert SECRET not in repr(settings)


# --- CORS and rate limit -------------------------------------------------------------------


def test_cors_preflight_allows_only_listed_origins(gateway: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    allowed = httpx.options(f"{gateway}{SMOKE}", headers={**preflight, "Origin": ALLOWED_ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    refused = httpx.options(
        f"{gateway}{SMOKE}", headers={**preflight, "Origin": "https://evil.example.com"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def test_rate_limit_is_per_subject_with_retry_after(small_gateway: str) -> None:
    greedy = bearer(token(subject=f"greedy-{uuid.uuid4()}"))
    statuses = [
        httpx.get(f"{small_gateway}/api/v1/jobs", headers=greedy).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    limited = httpx.get(f"{small_gateway}/api/v1/jobs", headers=greedy)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 20  # one token per 20 s at 3/min
    polite = bearer(token(subject=f"polite-{uuid.uuid4()}"))
    assert httpx.get(f"{small_gateway}/api/v1/jobs", headers=polite).status_code == 200


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = SubjectRateLimiter(rate_per_minute=60, capacity=2, clock=lambda: now[0])
    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # other subjects have their own bucket


# --- demo and fuzz -------------------------------------------------------------------------


def test_demo_lists_jobs_and_runs_platform_smoke(gateway: str) -> None:
    text = run_demo(gateway, SECRET)
    assert "platform_smoke" in text
    assert "SUCCESS" in text
    assert "postgresql_latency_ms" in text


def test_openapi_document_holds_under_every_schemathesis_check(
    gateway: str, tmp_path: Path
) -> None:
    """The OpenAPI document states every constraint the gateway enforces.

    Schemathesis with all its checks (not only "no 5xx"): schema-valid requests are not
    refused, schema-invalid ones are, every status and body is documented, auth is not
    ignored, unsupported methods get 405. Bounded: 25 examples per operation, coverage and
    fuzzing phases, deterministic. Job names are generated, so launches stop at 404 and no
    run is started.
    """
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{gateway}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-deterministic",
        "--continue-on-failure",
        "--workers",
        "1",
        "-H",
        f"Authorization: Bearer {token(subject='schemathesis')}",
    ]
    # In a temporary directory: the CLI keeps its example database under ./.schemathesis.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # Every operation of the document was exercised.
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested and selected[1] == selected[2] == tested[1], result.stdout[-3000:]


_json = hypothesis.strategies.recursive(
    hypothesis.strategies.none()
    | hypothesis.strategies.booleans()
    | hypothesis.strategies.integers()
    | hypothesis.strategies.floats(allow_nan=False, allow_infinity=False)
    | hypothesis.strategies.text(),
    lambda inner: (
        hypothesis.strategies.lists(inner, max_size=3)
        | hypothesis.strategies.dictionaries(hypothesis.strategies.text(), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_fuzzed_run_config_reaches_dagster_and_comes_back_422(api: httpx.Client) -> None:
    """Arbitrary JSON under keys no job defines: Dagster's rejection, never a 5xx or a run."""

    @hypothesis.given(
        run_config=hypothesis.strategies.dictionaries(
            hypothesis.strategies.text(min_size=1).map(lambda k: "fuzz_" + k),
            _json,
            min_size=1,
            max_size=3,
        )
    )
    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(run_config: dict[str, Any]) -> None:
        response = api.post(SMOKE, json={"run_config": run_config})
        assert response.status_code == 422, response.text
        assert all(issue["type"] == "dagster_run_config" for issue in response.json()["detail"])

    call()


# --- partitioned jobs ----------------------------------------------------------------------

ENRICHMENT = "/api/v1/jobs/customer_enrichment"
_RUN_TAGS = "query T($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"


def run_tags(dagster_url: str, run_id: str) -> dict[str, str]:
    body = httpx.post(
        f"{dagster_url}/graphql", json={"query": _RUN_TAGS, "variables": {"id": run_id}}
    ).json()
    return {t["key"]: t["value"] for t in body["data"]["runOrError"]["tags"]}


def test_partitions_are_listed(api: httpx.Client) -> None:
    keys = api.get(f"{ENRICHMENT}/partitions").json()["partitions"]
    assert keys[0] == "2025-01-01" and len(keys) > 300  # daily since 2025-01-01
    assert api.get("/api/v1/jobs/platform_smoke/partitions").json()["partitions"] == []


def test_a_partitioned_job_is_launched_for_one_partition(
    api: httpx.Client, dagster_url: str
) -> None:
    # customer_enrichment could not be launched through the gateway before: no partition.
    keys = api.get(f"{ENRICHMENT}/partitions").json()["partitions"]
    response = launch_and_cancel(api, json={"partition": keys[-2]}, url=f"{ENRICHMENT}/runs")
    assert response.status_code == 202, response.text
    tags = run_tags(dagster_url, response.json()["run_id"])
    assert tags["dagster/partition"] == keys[-2]
    assert tags["gateway/subject"] == "tests"


@pytest.mark.parametrize(
    ("url", "body", "needle"),
    [
        (f"{ENRICHMENT}/runs", {}, "is partitioned"),  # no partition given
        (f"{ENRICHMENT}/runs", {"partition": "1999-01-01"}, "has no partition"),
        (SMOKE, {"partition": "2025-01-01"}, "not partitioned"),
        (f"{ENRICHMENT}/runs", {"tags": {"dagster/partition": "2025-01-01"}}, "reserved"),
        (
            f"{ENRICHMENT}/backfills",
            {"partition_range": {"start": "2025-01-02", "end": "2025-01-01"}},
            "comes after",
        ),
        (
            f"{ENRICHMENT}/backfills",
            {"partition_range": {"start": "2025-01-01", "end": "2099-01-01"}},
            "has no partition",
        ),
        (
            f"{ENRICHMENT}/backfills",
            {"partition_range": {"start": "2025-01-01", "end": "2027-12-31"}},
            "has no partition",
        ),
        (
            "/api/v1/jobs/platform_smoke/backfills",
            {"partition_range": {"start": "a", "end": "b"}},
            "not partitioned",
        ),
    ],
    ids=[
        "missing",
        "unknown",
        "unpartitioned",
        "forged-tag",
        "reversed",
        "beyond",
        "future",
        "unpartitioned-backfill",
    ],
)
def test_partition_mistakes_are_422_with_a_reason(
    api: httpx.Client, url: str, body: dict[str, Any], needle: str
) -> None:
    response = api.post(url, json=body)
    assert response.status_code == 422, response.text
    assert needle in response.text


def test_a_partition_range_is_a_dagster_backfill(api: httpx.Client, dagster_url: str) -> None:
    span = {"start": "2025-03-01", "end": "2025-03-03"}
    response = api.post(f"{ENRICHMENT}/backfills", json={"partition_range": span})
    assert response.status_code == 202, response.text
    accepted = response.json()
    backfill_id = accepted["backfill_id"]
    try:
        assert accepted["partitions"] == ["2025-03-01", "2025-03-02", "2025-03-03"]
        assert response.headers["location"] == f"/api/v1/backfills/{backfill_id}"
        status = api.get(response.headers["location"])
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["job"] == "customer_enrichment"
        assert body["partitions"] == accepted["partitions"]
        assert body["status"] in ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS")
        assert all(run["partition"] in accepted["partitions"] for run in body["runs"])
        assert api.get("/api/v1/backfills/zzzzzzzz").status_code == 404
    finally:
        mutation = (
            "mutation C($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"
        )
        httpx.post(
            f"{dagster_url}/graphql", json={"query": mutation, "variables": {"id": backfill_id}}
        )
        cancel_unfinished_runs(dagster_url)
