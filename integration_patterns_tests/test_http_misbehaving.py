"""The REST client against partners that misbehave on the wire (issue 13).

Why: a partner's headers, redirects, bodies and timing are outside input. Each section is
one class of misbehaviour, driven by a real HTTP server on 127.0.0.1 (``misbehaving_http``)
that counts what actually arrived; header parsers are property-tested over arbitrary text.
"""

import base64
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from integration_patterns.resources.http.auth import OAuth2ClientCredentials
from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.budget import ServerHint
from integration_patterns.resources.http.client import RestClient
from integration_patterns.resources.http.errors import (
    AuthError,
    CircuitOpenError,
    ClientError,
    ConnectionFailedError,
    DeadlineExceededError,
    HttpApiError,
    InvalidResponseError,
    PaginationError,
    RedirectError,
    RequestTimeoutError,
    ServerError,
)
from integration_patterns.resources.http.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    link_with_rel,
    parse_link_header,
)
from integration_patterns.resources.http.redaction import Redactor
from integration_patterns.resources.http.retry import (
    RetryPolicy,
    parse_retry_after,
    reset_from_header,
)
from integration_patterns_tests.misbehaving_http import TOKEN, MisbehavingServer

CLIENT_ID = "client id/ü"
SECRET = "s3cr3t+/= &é%41:x"  # every character that URL, form, JSON and base64 forms change
MAX_WAIT = 0.5
QUICK = settings(max_examples=300, deadline=None, database=None)


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as peer:
        yield peer


@pytest.fixture(scope="module")
def other_origin() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as peer:
        yield peer


def make_client(
    server: MisbehavingServer,
    *,
    token_kind: str = "ok",
    token_path: str = "/token",
    auth_method: str = "client_secret_basic",
    read_timeout: float = 2.0,
    max_retries: int = 3,
    backoff_base: float = 0.01,
    **options: Any,
) -> RestClient:
    redact = Redactor()
    http = httpx.Client(base_url=server.url, timeout=httpx.Timeout(read_timeout, connect=1.0))
    auth = OAuth2ClientCredentials(
        token_url=f"{server.url}{token_path}?kind={token_kind}",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        auth_method=auth_method,
        http=http,
        redact=redact,
    )
    retry = RetryPolicy(
        max_retries=max_retries,
        backoff_base=backoff_base,
        backoff_cap=max(backoff_base, 0.05),
        max_retry_after=MAX_WAIT,
    )
    return RestClient(server.url, auth=auth, http=http, redact=redact, retry=retry, **options)


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result, failing the test (not hanging it) when it takes longer."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def unique_key() -> str:
    return f"k{time.monotonic_ns()}"


# --- server-suggested waits are validated and clamped ------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    [
        "86400",  # a day
        "99999999999999",  # longer than any clock
        "Fri, 31 Dec 9999 23:59:59 GMT",  # an HTTP-date at the end of time
        "inf",  # non-finite: ignored, backoff instead
        "nan",
        "-1",
        "1e309",
        "\u0661\u0662",  # Arabic-Indic digits that float() accepts
    ],
)
def test_retry_after_is_validated_and_clamped(server, retry_after):
    client = make_client(server)
    key = unique_key()
    params = {"status": 429, "retry_after": retry_after, "key": key}
    started = time.monotonic()
    body = within(5, lambda: client.get_json("/once", params=params))
    assert body["data"] == ["ok"] and server.hits[f"/once:{key}"] == 2
    assert time.monotonic() - started < MAX_WAIT + 1.0


@pytest.mark.parametrize(
    "reset",
    [
        "86400",  # a day, as delta seconds
        "4102444800",  # 2100-01-01 as an epoch timestamp
        "inf",  # before the fix: OverflowError from int(float("inf"))
        "nan",
        "1e309",
        "-5",
        "soon",
    ],
)
def test_rate_limit_reset_cannot_park_the_clients_sharing_a_budget(server, reset):
    shared = ServerHint()  # what every client of one partner shares without a budget
    first, second = make_client(server, limiter=shared), make_client(server, limiter=shared)
    params = {"status": 200, "remaining": "0", "reset": reset, "key": unique_key()}
    started = time.monotonic()
    within(5, lambda: first.get_json("/once", params=params))
    within(5, lambda: second.get_json("/once", params={"key": unique_key()}))
    within(5, lambda: first.get_json("/once", params={"key": unique_key()}))
    assert time.monotonic() - started < 2 * MAX_WAIT + 1.0


@given(value=st.text(max_size=40))
@example(value="1e999")
@example(value="Infinity")
@example(value="Mon, 01 Jan 10000 00:00:00 GMT")
@QUICK
def test_any_retry_after_text_gives_a_bounded_wait_or_none(value):
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    policy = RetryPolicy(backoff_base=0.1, backoff_cap=1.0, max_retry_after=5.0)
    assert 0 <= policy.wait(1, value) <= 5.0


@given(value=st.text(max_size=40))
@example(value="inf")
@example(value="nan")
@QUICK
def test_any_rate_limit_reset_text_gives_a_bounded_pause_or_none(value):
    seconds = reset_from_header(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    pause = RetryPolicy(max_retry_after=5.0).server_pause(value)
    assert pause is None or 0 <= pause <= 5.0


@given(seconds=st.integers(min_value=0, max_value=10**9))
@QUICK
def test_delay_seconds_are_read_exactly(seconds):
    assert parse_retry_after(str(seconds)) == seconds
    assert reset_from_header(f" {seconds} ") == seconds


# --- credentials are redacted in every encoded form ---------------------------------------


def wire_forms(server: MisbehavingServer) -> set[str]:
    """Every form in which the credentials actually reached the (echoing) server."""
    forms = {SECRET, quote(SECRET, safe=""), quote_plus(SECRET), json.dumps(SECRET)[1:-1]}
    for _, _, authorization, body in server.seen:
        if authorization and authorization.startswith("Basic "):
            basic = authorization.split(" ", 1)[1]
            forms |= {basic, base64.b64decode(basic).decode().split(":", 1)[1]}
        for pair in body.decode().split("&"):
            if pair.startswith("client_secret="):
                forms.add(pair.split("=", 1)[1])
                assert unquote_plus(pair.split("=", 1)[1]) == SECRET
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form) for form in forms}
    return forms


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_an_echoed_token_request_reveals_no_form_of_the_secret(server, auth_method, caplog):
    client = make_client(server, token_path="/echo", auth_method=auth_method)
    server.seen.clear()
    with caplog.at_level(logging.INFO), pytest.raises(AuthError) as raised:
        client.get_json("/landing")
    error = raised.value
    assert error.status == 400 and "headers" in error.body  # the echo is quoted, masked
    text = " ".join([str(error), error.body, caplog.text])
    forms = wire_forms(server)
    assert len(forms) >= 5
    for form in forms:
        assert form not in text, form


def test_an_echoed_data_request_reveals_neither_token_nor_secret(server):
    client = make_client(server)
    with pytest.raises(ClientError) as raised:
        client.get_json("/echo", params={"note": SECRET, "api_key": SECRET})
    text = str(raised.value)
    assert "Bearer ***" in text
    for form in {TOKEN, f"Bearer {TOKEN}", *wire_forms(server)}:
        assert form not in text, form


@given(
    secret=st.text(
        alphabet=st.characters(exclude_characters="*", exclude_categories=["Cs"]),
        min_size=4,
        max_size=24,
    )
)
@QUICK
def test_redactor_masks_every_encoding_of_any_secret(secret):
    redact = Redactor(secret)
    redact.add_basic("id", secret)
    forms = {
        secret,
        quote(secret, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(f"id:{secret}".encode()).decode(),
        base64.b64encode(f"id:{quote(secret, safe='')}".encode()).decode(),
    }
    for form in forms:
        assert form not in redact(f"<{form}>"), (secret, form)


# --- pagination cycles fail clearly -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "paginator", "params", "pages_before"),
    [
        # the first page (no cursor) names c0, which names c0 again
        ("/cursor-cycle", CursorPaginator(), {"period": 1}, 2),
        # c0 -> c1 -> c2 -> c0 -> c1: the request for c1 repeats
        ("/cursor-cycle", CursorPaginator(), {"period": 3}, 4),
        # page 4 links back to page 1
        ("/github", LinkHeaderPaginator(), {"page": 1, "style": "absolute", "cycle": 1}, 4),
    ],
)
def test_a_repeated_cursor_or_link_fails_instead_of_looping(
    server, path, paginator, params, pages_before
):
    client = make_client(server)
    pages = []
    data_path = None if path == "/github" else "data"

    def walk() -> None:
        for page in client.paginate(path, params=params, paginator=paginator, data_path=data_path):
            pages.append(page)  # noqa: PERF402 (one page at a time: those before the error stay)

    with pytest.raises(PaginationError) as raised:
        within(10, walk)
    assert len(pages) == pages_before  # the repeated page is never yielded again
    assert raised.value.status == 200 and path in raised.value.url


# --- redirects as RFC 9110 says -----------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_same_origin_redirect_is_followed_and_its_body_is_never_data(server, code):
    client = make_client(server)
    body = client.get_json("/redirect", params={"code": code, "to": "/landing"})
    assert body["data"] == ["landed"] and body["method"] == "GET"
    assert body["authorization"] == f"Bearer {TOKEN}"
    assert client.stats.redirects == 1


@pytest.mark.parametrize(
    ("code", "method"),
    [(301, "GET"), (302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")],
)
def test_post_redirects_change_method_only_where_rfc_9110_allows(server, code, method):
    client = make_client(server)
    response = client.request(
        "POST", "/redirect", params={"code": code, "to": "/landing"}, json_body={"n": 1}
    )
    landed = response.json()
    assert landed["method"] == method
    assert landed["body"] == ('{"n":1}' if method == "POST" else "")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_to_another_origin_is_refused_and_sends_nothing_there(server, other_origin, code):
    client = make_client(server)
    other_origin.seen.clear()
    with pytest.raises(RedirectError) as raised:
        client.get_json("/redirect", params={"code": code, "to": f"{other_origin.url}/landing"})
    assert other_origin.seen == []
    assert raised.value.status == code and "another origin" in str(raised.value)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"code": 302, "loop": 1}, "more than 5 redirects"),
        ({"code": 302}, "without a Location"),
        ({"code": 304}, "without a Location"),
        ({"code": 300, "to": "http://[::1"}, "invalid Location"),
    ],
)
def test_redirects_that_cannot_be_followed_are_typed_errors(server, params, why):
    client = make_client(server)
    key = unique_key()
    with pytest.raises(RedirectError) as raised:
        client.get_json("/redirect", params={**params, "key": key})
    assert why in str(raised.value)
    assert "redirect body" in raised.value.body or params["code"] == 304  # 304 has no body
    assert server.hits[f"/redirect:{key}"] == (6 if "loop" in params else 1)


# --- every failure is a typed error with masked URL, status and body ----------------------


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("html", "is not JSON"),
        ("list", "is not a JSON object"),
        ("no_token", "access_token"),
        ("numeric_token", "access_token"),
        ("nan", "expires_in"),
        ("inf", "expires_in"),
        ("negative", "expires_in"),
        ("zero", "expires_in"),
        ("word", "expires_in"),
        ("bool", "expires_in"),
        ("object", "expires_in"),
        ("gzip_garbage", "could not be decoded"),
        ("mac", "not bearer"),  # a token we cannot use as a bearer token
    ],
)
def test_unusable_token_responses_are_auth_errors(server, kind, why):
    client = make_client(server, token_kind=kind)
    with pytest.raises(AuthError) as raised:
        client.get_json("/landing")
    assert why in str(raised.value) and "/token" in raised.value.url
    assert TOKEN not in str(raised.value)


def test_token_without_expires_in_is_kept_an_hour(server):
    client = make_client(server, token_kind="no_expiry")
    assert client.get_json("/landing")["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("html", 200), ("gzip", None), ("truncated_gzip", 200), ("bytes", 200)],
)
def test_unreadable_bodies_are_typed_errors(server, kind, status):
    client = make_client(server)
    with pytest.raises(InvalidResponseError) as raised:
        client.get_json("/bad-body", params={"kind": kind})
    assert raised.value.status == status and "/bad-body?kind=" in raised.value.url


def test_open_circuit_still_says_what_the_last_failure_was(server):
    client = make_client(server, max_retries=0, breaker=CircuitBreaker(2, cooldown=30))
    for _ in range(2):
        with pytest.raises(ServerError):
            client.get_json("/status", params={"code": 500})
    with pytest.raises(CircuitOpenError) as raised:
        client.get_json("/status", params={"code": 500})
    assert raised.value.status == 500 and "database down" in raised.value.body


# --- POST and PATCH are retried only when that cannot apply them twice --------------------


@pytest.mark.parametrize(
    ("method", "idempotency_key", "arrivals"),
    [
        ("POST", None, 1),  # may have been applied: never repeated
        ("PATCH", None, 1),
        ("POST", "order-42", 4),  # the key makes repeating safe
        ("PUT", None, 4),  # idempotent by definition
    ],
)
def test_non_idempotent_requests_are_not_repeated_blindly(
    server, method, idempotency_key, arrivals
):
    client = make_client(server, max_retries=3)
    key = unique_key()
    with pytest.raises(ServerError) as raised:
        client.request(
            method,
            "/status",
            params={"code": 503, "key": key},
            json_body={"order": 42},
            idempotency_key=idempotency_key,
        )
    assert server.hits[f"/status:{key}"] == arrivals
    assert raised.value.attempts == arrivals


def test_post_is_retried_when_the_connection_never_opened(free_port):
    client = RestClient(  # a port with nobody listening
        f"http://127.0.0.1:{free_port}", retry=RetryPolicy(max_retries=2, backoff_base=0.01)
    )
    with pytest.raises(ConnectionFailedError):
        client.request("POST", "/orders", json_body={"order": 1})
    assert client.stats.connection_errors == 3


@pytest.mark.parametrize(("method", "arrivals"), [("POST", 1), ("GET", 4)])
def test_a_request_that_timed_out_on_the_server_is_repeated_only_if_idempotent(
    server, method, arrivals
):
    client = make_client(server, read_timeout=0.3)
    key = unique_key()
    with pytest.raises(RequestTimeoutError) as raised:
        client.request(method, "/drip", params={"every": 1.0, "seconds": 2, "key": key})
    assert server.hits[f"/drip:{key}"] == arrivals
    assert ("not retried" in str(raised.value)) == (method == "POST")


# --- a total deadline per request ---------------------------------------------------------


def test_slow_drip_body_stops_at_the_deadline(server):
    client = make_client(server, read_timeout=1.0, deadline=1.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as raised:
        within(8, lambda: client.get_json("/drip", params={"every": 0.1, "seconds": 10}))
    assert time.monotonic() - started < 2.5
    assert "deadline" in str(raised.value)


def test_slow_drip_token_response_stops_at_the_deadline(server):
    client = make_client(server, token_kind="drip", read_timeout=1.0)
    assert client.auth is not None
    client.auth.deadline = 1.5
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="token request exceeded its deadline"):
        within(8, lambda: client.get_json("/landing"))
    assert time.monotonic() - started < 2.5


def test_retries_stop_at_the_deadline(server):
    client = make_client(server, max_retries=50, backoff_base=0.4, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(ServerError) as raised:
        within(8, lambda: client.get_json("/status", params={"code": 503}))
    assert time.monotonic() - started < 1.5
    assert "deadline" in str(raised.value) and raised.value.status == 503


# --- Link-header pagination and bare-array pages ------------------------------------------


@pytest.mark.parametrize("style", ["absolute", "path", "relative"])
def test_link_header_pagination_over_bare_arrays(server, style):
    client = make_client(server)
    pages = list(
        client.paginate(
            "/github",
            params={"page": 1, "style": style},
            paginator=LinkHeaderPaginator(),
            data_path=None,
        )
    )
    assert [item["id"] for page in pages for item in page.items] == list(range(12))
    assert [page.number for page in pages] == [1, 2, 3, 4]


def test_a_page_that_is_not_a_list_is_a_typed_error(server):
    client = make_client(server)
    with pytest.raises(InvalidResponseError, match="no list as the page"):
        list(client.paginate("/landing", data_path=None))


LINK_TARGETS = st.text(
    alphabet=st.characters(exclude_characters="<>", exclude_categories=["Cs", "Zs", "Cc"]),
    min_size=1,
    max_size=30,
)
RELS = st.lists(st.sampled_from(["next", "prev", "last", "first", "Next", "up"]), min_size=1)


@given(value=st.text(max_size=80))
@example(value='<a>; rel="next", <b')
@example(value='<a>; title="\\')
@QUICK
def test_any_link_header_text_parses_without_error(value):
    links = parse_link_header(value)
    for target, params in links:
        assert target in value
        assert all(isinstance(v, str) for v in params.values())
    link_with_rel([value], "next")


@given(links=st.lists(st.tuples(LINK_TARGETS, RELS), min_size=1, max_size=5))
@QUICK
def test_formatted_link_headers_round_trip(links):
    header = ", ".join(f'<{target}>; rel="{" ".join(rels)}"' for target, rels in links)
    assert [target for target, _ in parse_link_header(header)] == [t.strip() for t, _ in links]
    expected = next((t.strip() for t, rels in links if "next" in [r.lower() for r in rels]), None)
    assert link_with_rel([header], "next") == expected


def test_every_failure_is_an_http_api_error(server):
    # the classes above, once more through the base class an asset catches
    client = make_client(server, max_retries=0, deadline=2.0)
    calls = [
        lambda: client.get_json("/bad-body", params={"kind": "gzip"}),
        lambda: client.get_json("/redirect", params={"code": 302}),
        lambda: client.get_json("/status", params={"code": 404}),
        lambda: client.get_json("http://[::1"),
    ]
    for call in calls:
        with pytest.raises(HttpApiError):
            call()
