"""The REST client against the partner-API simulator running as a real uvicorn process.

Why: the client's promises (nothing lost under faults, one refresh per revocation, waits
that honour Retry-After, fast failure where retrying cannot help, a budget the partner
never sees broken, no secret in any message) only mean something over real sockets, with
the partner counting what actually arrived.
"""

import logging
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import httpx
import pytest

from devstack.partner_api.process import SimulatorProcess
from integration_patterns.defs.external_api.resources import PartnerApiResource
from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.client import RestClient
from integration_patterns.resources.http.errors import (
    AuthError,
    CircuitOpenError,
    ClientError,
    HttpApiError,
    RequestTimeoutError,
)
from integration_patterns.resources.http.pagination import (
    CursorPaginator,
    NextLinkPaginator,
    PageNumberPaginator,
)
from integration_patterns.resources.http.redaction import Redactor, mask_url
from integration_patterns.resources.http.retry import RetryPolicy, parse_retry_after

CLIENT_ID = "test-client"
SECRET = "s3cr3t-Partner-pw-7f2a9c"
# the simulator's limit: 10 requests per second; the client keeps a 10% margin below it
SERVER_LIMIT = {"rate_limit": 10, "rate_window": 1.0}
CLIENT_BUDGET = 540


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(config={"clients": {CLIENT_ID: SECRET}}) as process:
        yield process


def resource(sim: SimulatorProcess, **overrides) -> PartnerApiResource:
    """A resource tuned for quick tests: short timeouts and backoff."""
    settings = {
        "base_url": sim.url,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "read_timeout": 0.5,
        "connect_timeout": 1.0,
        "backoff_base": 0.02,
        "backoff_cap": 0.2,
        "max_retries": 8,
        "breaker_threshold": 10,
        "breaker_cooldown": 1.0,
    }
    return PartnerApiResource(**(settings | overrides))


def fetch_ids(client: RestClient, limit: int = 10, paginator=None) -> list[str]:
    ids: list[str] = []
    for page in client.paginate("/v2/data", params={"limit": limit}, paginator=paginator):
        ids += [item["external_id"] for item in page.items]
    return ids


def expected_ids(total: int) -> list[str]:
    return [f"P{i:06d}" for i in range(total)]


@pytest.mark.parametrize(
    ("kind", "counter"),
    [
        ("rate_limit", "rate_limited"),  # 429 with Retry-After: 1
        ("rate_limit_date", "rate_limited"),  # 429 with Retry-After as an HTTP-date
        ("server_error", "server_errors"),  # 500 / 502 / 503
        ("revoke", "reauthentications"),  # token revoked mid-pagination -> 401
        ("slow", "timeouts"),  # answer slower than the read timeout
        ("drop", "connection_errors"),  # connection cut mid-response
    ],
)
def test_twenty_percent_faults_lose_and_duplicate_nothing(sim, kind, counter):
    sim.reset(faults={kind: 0.2}, total_records=100, slow_seconds=1.0, **SERVER_LIMIT)
    api = resource(sim, rate_limit_per_minute=CLIENT_BUDGET)
    client = api.get_client()
    try:
        ids = fetch_ids(client, limit=20)
    finally:
        api.close()
    stats = sim.stats()
    assert ids == expected_ids(100)  # complete, in order, no duplicates
    assert stats["faults"].get(kind, 0) > 0, "the seed must inject at least one fault"
    seen = getattr(client.stats, counter)
    # a busy machine may time out an innocent request too, never the other way round
    assert seen >= stats["faults"][kind] if kind == "slow" else seen == stats["faults"][kind]
    assert stats["violations"] == []


def test_revocation_mid_pagination_costs_exactly_one_refresh(sim):
    sim.reset(revoke_after_pages=3, total_records=100)
    api = resource(sim)
    client = api.get_client()
    try:
        ids = fetch_ids(client)
    finally:
        api.close()
    assert ids == expected_ids(100)
    assert client.stats.reauthentications == 1
    assert client.auth is not None and client.auth.forced_refreshes == 1
    stats = sim.stats()
    assert stats["tokens_issued"] == 2
    assert stats["statuses"]["401"] == 1


def timed_client(sim: SimulatorProcess, marks: list[tuple[str, float]]) -> RestClient:
    """A client whose httpx hooks note when each request leaves and each response lands."""
    api = resource(sim)
    client = api.get_client()
    client.http.event_hooks = {
        "request": [lambda request: marks.append(("sent", time.time()))],
        "response": [lambda response: marks.append((str(response.status_code), time.time()))],
    }
    return client


@pytest.mark.parametrize("kind", ["rate_limit", "rate_limit_date"])
def test_wait_after_429_is_at_least_retry_after(sim, kind):
    sim.reset(script=[kind], retry_after_seconds=1)
    marks: list[tuple[str, float]] = []
    client = timed_client(sim, marks)
    try:
        assert len(client.get_json("/v2/data", params={"limit": 5})["data"]) == 5
    finally:
        client.close()
    data_marks = marks[2:]  # the first two belong to the token request
    assert [m[0] for m in data_marks] == ["sent", "429", "sent", "200"]
    waited = data_marks[2][1] - data_marks[1][1]
    assert waited >= 1.0
    if kind == "rate_limit_date":
        retry_at = sim.stats()["arrivals"][0]["retry_at"]
        assert data_marks[2][1] >= retry_at  # not before the date the partner named
    assert client.stats.rate_limited == 1


def test_persistent_403_fails_at_once_with_status_url_and_body(sim):
    sim.reset(always="403")
    api = resource(sim)
    started = time.perf_counter()
    with pytest.raises(ClientError) as caught:
        api.get_client().get_json("/v2/data", params={"limit": 5, "api_key": "k-123456"})
    elapsed = time.perf_counter() - started
    api.close()
    stats = sim.stats()
    error = str(caught.value)
    assert caught.value.status == 403
    assert stats["data_requests"] == 1 and elapsed < 1.0  # no retry, no backoff
    assert "/v2/data" in error and "api_key=***" in error and "k-123456" not in error
    assert "forbidden" in error  # the partner's body excerpt
    # the simulator echoes the token in its 403 body; the client must have masked it
    token = stats["issued_tokens"][0]
    assert token not in error and SECRET not in error and "***" in error


def test_timeouts_are_retried_then_fail_with_a_clear_error(sim):
    sim.reset(always="slow", slow_seconds=1.0)
    api = resource(sim, read_timeout=0.3, max_retries=2)
    with pytest.raises(RequestTimeoutError) as caught:
        api.get_client().get_json("/v2/data")
    api.close()
    assert sim.stats()["data_requests"] == 3
    message = str(caught.value)
    assert "timed out" in message and "read 0.3s" in message and "3 attempt(s)" in message


def test_circuit_breaker_fails_fast_then_lets_one_probe_through(sim):
    sim.reset(faults={"server_error": 1.0})
    api = resource(sim, breaker_threshold=3, breaker_cooldown=2.0, max_retries=10)
    client = api.get_client()
    try:
        with pytest.raises(CircuitOpenError):
            client.get_json("/v2/data")
        assert sim.stats()["data_requests"] == 3  # opened after three failures
        with pytest.raises(CircuitOpenError):
            client.get_json("/v2/data")
        assert sim.stats()["data_requests"] == 3  # failed fast, the partner saw nothing
        sim.configure(faults={})
        time.sleep(2.1)
        assert client.get_json("/v2/data", params={"limit": 1})["data"]
        assert sim.stats()["data_requests"] == 4  # exactly one probe, which closed it
        assert client.breaker is not None and client.breaker.state == "closed"
    finally:
        api.close()


def test_budget_is_shared_by_every_client_of_the_process(sim):
    sim.reset(rate_limit=6, rate_window=1.0)
    apis = [resource(sim, rate_limit_per_minute=300) for _ in range(2)]  # 5 per second
    for api in apis:
        api.get_client().get_json("/v2/data", params={"limit": 1})  # warm up: token, pool
    time.sleep(0.5)

    def five_calls(api: PartnerApiResource) -> None:
        for _ in range(5):
            api.get_client().get_json("/v2/data", params={"limit": 1})

    started = time.perf_counter()
    threads = [threading.Thread(target=five_calls, args=(api,)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for api in apis:
        api.close()
    # ten requests through one 5/s budget need nine intervals of 0.2 s; two separate
    # budgets would have finished in about 0.8 s
    assert elapsed >= 1.75
    assert sim.stats()["violations"] == []


def test_rate_limit_headers_slow_the_client_before_a_429(sim):
    sim.reset(rate_limit=4, rate_window=1.0, total_records=100)
    api = resource(sim)  # no budget of its own: only the partner's headers
    client = api.get_client()
    started = time.perf_counter()
    try:
        ids = fetch_ids(client)
    finally:
        api.close()
    stats = sim.stats()
    assert ids == expected_ids(100)
    assert "429" not in stats["statuses"] and stats["violations"] == []
    assert client.stats.server_pauses >= 2
    assert time.perf_counter() - started >= 2.0  # 10 requests at 4 per second


def test_token_is_cached_then_refreshed_before_it_expires(sim):
    # Usable for ttl - margin = 2 s (room for three calls on a loaded machine), then
    # refreshed while the partner would still accept the old token for 4 s more.
    sim.reset(token_ttl=6.0)
    api = resource(sim, token_refresh_margin=4.0)
    client = api.get_client()
    try:
        for _ in range(3):
            client.get_json("/v2/data", params={"limit": 1})
        assert sim.stats()["tokens_issued"] == 1
        time.sleep(2.2)  # inside the margin: refreshed before the partner refuses it
        client.get_json("/v2/data", params={"limit": 1})
    finally:
        api.close()
    stats = sim.stats()
    assert stats["tokens_issued"] == 2 and "401" not in stats["statuses"]


def test_concurrent_callers_share_one_token(sim):
    sim.reset()
    api = resource(sim)
    client = api.get_client()
    threads = [
        threading.Thread(
            target=client.get_json, args=("/v2/data",), kwargs={"params": {"limit": 1}}
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api.close()
    stats = sim.stats()
    assert stats["token_requests"] == 1 and stats["data_requests"] == 8


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_both_client_authentication_methods(sim, method):
    sim.reset(total_records=30)
    api = resource(sim, auth_method=method)
    try:
        assert fetch_ids(api.get_client()) == expected_ids(30)
    finally:
        api.close()


def test_wrong_secret_fails_at_once_without_revealing_it(sim):
    sim.reset()
    wrong = "wrong-secret-value-123"
    api = resource(sim, client_secret=wrong)
    with pytest.raises(AuthError) as caught:
        api.get_client().get_json("/v2/data")
    api.close()
    assert caught.value.status == 401 and "invalid_client" in str(caught.value)
    assert wrong not in str(caught.value)
    assert sim.stats()["token_requests"] == 1


@pytest.mark.parametrize(
    "paginator",
    [
        CursorPaginator(),  # opaque cursor in next_cursor
        NextLinkPaginator(),  # absolute URL in links.next
        PageNumberPaginator(),  # ?page=N until total_pages
    ],
    ids=["cursor", "next_link", "page_number"],
)
def test_every_paginator_reads_the_complete_set(sim, paginator):
    sim.reset(total_records=95)
    api = resource(sim)
    try:
        assert fetch_ids(api.get_client(), paginator=paginator) == expected_ids(95)
        assert api.get_client().stats.pages == 10
    finally:
        api.close()


class _HijackedNextLink(NextLinkPaginator):
    """A partner response whose next link names another host (broken or malicious)."""

    def update_state(self, body, items, response):
        super().update_state(body, items, response)
        if self._next:
            self._next = self._next.replace("127.0.0.1", "127.0.0.2")


def test_next_link_to_another_origin_is_refused(sim):
    sim.reset(total_records=30)
    api = resource(sim)
    try:
        with pytest.raises(HttpApiError, match="leaves the partner's origin"):
            fetch_ids(api.get_client(), paginator=_HijackedNextLink())
    finally:
        api.close()
    assert sim.stats()["data_requests"] == 1  # the token never went anywhere else


def test_secrets_never_reach_the_log(sim):
    sim.reset(revoke_after_pages=2, total_records=40, faults={"server_error": 0.2})
    api = resource(sim)
    logger = logging.getLogger("test_http_client.capture")
    logger.setLevel(logging.INFO)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    client = api.get_client(log=logger)
    try:
        fetch_ids(client)
        client.get_json("/v2/data", params={"limit": 1, "access_token": "leaky-token-999"})
    finally:
        api.close()
        logger.removeHandler(handler)
    text = "\n".join(lines)
    # every call logged exactly once, token requests included
    assert sum("/v2/data" in line for line in lines) == client.stats.requests
    assert client.auth is not None
    assert sum("/oauth/token" in line for line in lines) == client.auth.fetched == 2
    assert "access_token=***" in text and "leaky-token-999" not in text
    assert SECRET not in text
    for token in sim.stats()["issued_tokens"]:
        assert token not in text


def test_latency_percentiles_are_reported(sim):
    sim.reset(total_records=50)
    api = resource(sim)
    client = api.get_client()
    try:
        fetch_ids(client)
    finally:
        api.close()
    metadata = client.stats.as_metadata()
    assert metadata["requests"] == 5
    assert 0 < metadata["latency_p50_ms"] <= metadata["latency_p95_ms"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),  # delay-seconds
        ("120", 120.0),
        ("2.5", 2.5),  # lenient: fractional seconds
        (formatdate(1_000_030, usegmt=True), 30.0),  # HTTP-date 30 s ahead of "now"
        (formatdate(999_000, usegmt=True), 0.0),  # a date in the past means now
        ("soon", None),  # unparsable -> fall back to backoff
        (None, None),  # absent
    ],
)
def test_retry_after_forms(value, expected):
    assert parse_retry_after(value, now=1_000_000) == expected


def test_retry_after_is_clamped_and_backoff_is_capped_with_jitter():
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0, max_retry_after=10.0)
    assert policy.wait(1, "3600") == 10.0
    waits = [policy.backoff(10) for _ in range(50)]
    assert all(2.0 <= w <= 4.0 for w in waits) and len(set(waits)) > 1
    assert 0.25 <= policy.backoff(1) <= 0.5


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://api.x/v2?cursor=abc&token=t0k", "https://api.x/v2?cursor=abc&token=***"),
        ("https://user:pw@api.x/v2", "https://user:***@api.x/v2"),
        ("https://api.x/v2?client_secret=s&page=2", "https://api.x/v2?client_secret=***&page=2"),
        ("https://api.x/v2/known-secret-value", "https://api.x/v2/***"),  # a known value
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url, Redactor("known-secret-value")) == masked


def test_bare_httpx_sees_the_simulator_refuse_bad_tokens(sim):
    """The simulator itself must refuse what the client is trusted to handle."""
    sim.reset()
    response = httpx.get(f"{sim.url}/v2/data", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_breaker_replaces_a_probe_that_never_reported():
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow() is None  # one failure: still closed
    breaker.record_failure()
    assert breaker.state == "open" and breaker.allow() == 10.0
    now[0] = 10.0
    assert breaker.allow() is None  # the probe
    assert breaker.allow() == 0.0  # only one probe at a time
    now[0] = 20.0
    assert breaker.allow() is None  # the first probe was lost (e.g. its caller crashed)
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() is None
