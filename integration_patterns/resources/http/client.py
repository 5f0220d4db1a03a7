"""A resilient REST client over httpx: one place that decides what each response means.

2xx returns; a 3xx is followed only to the same origin (:mod:`.redirects`), its body never
data; a 401 gets one forced token refresh (the ``httpx.Auth`` of :mod:`.auth`), then an
``AuthError``; 429 waits for ``Retry-After`` (validated, clamped: :mod:`.retry`) and
pauses everyone sharing the budget; 5xx, timeouts and dropped connections retry with
backoff and jitter (POST and PATCH only with an idempotency key, or when the connection
never opened); any other 4xx fails at once. A total deadline covers attempts, waits and
body reads (:mod:`.deadline`). Every failure is a typed :class:`HttpApiError` (masked URL,
status, body excerpt); an open circuit breaker still says what the last failure was.
Every attempt is logged once and counted in :class:`CallStats`.
"""

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from integration_patterns.resources.http.auth import OAuth2ClientCredentials
from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.budget import RateLimiter, ServerHint
from integration_patterns.resources.http.deadline import DeadlineStream, attempt_timeout
from integration_patterns.resources.http.errors import (
    CircuitOpenError,
    ClientError,
    DeadlineExceededError,
    HttpApiError,
    InvalidResponseError,
    PaginationError,
    RedirectError,
    for_status,
    for_transport,
    from_request,
    from_response,
)
from integration_patterns.resources.http.pagination import CursorPaginator, Paginator, dig
from integration_patterns.resources.http.redaction import Redactor, excerpt, mask_url
from integration_patterns.resources.http.redirects import RedirectRefused, next_hop, same_origin
from integration_patterns.resources.http.retry import (
    IDEMPOTENCY_HEADER,
    RETRY_STATUSES,
    RetryPolicy,
    may_retry,
)
from integration_patterns.resources.http.stats import CallStats

_LOG = logging.getLogger(__name__)
#: failures that happen before a single byte of the request reached the server
_NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class Page:
    """One page of results: its number (1-based), its items and the whole body."""

    number: int
    items: list[Any]
    body: Any


class RestClient:
    """Calls one REST API; thread-safe; close it (or use ``with``) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: OAuth2ClientCredentials | None = None,
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | ServerHint | None = None,
        breaker: CircuitBreaker | None = None,
        redact: Redactor | None = None,
        log: logging.Logger | None = None,
        deadline: float | None = 120.0,
        max_redirects: int = 5,
    ) -> None:
        self.http = http or httpx.Client(
            base_url=base_url, timeout=timeout or httpx.Timeout(30.0, connect=5.0)
        )
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or ServerHint()
        self.breaker = breaker
        self.redact = redact or Redactor()
        self.stats = CallStats()
        self.log = log or _LOG
        self.deadline = deadline
        self.max_redirects = max_redirects

    @property
    def log(self) -> logging.Logger:
        """Where every call is logged (the token provider's calls too)."""
        return self._log

    @log.setter
    def log(self, logger: logging.Logger) -> None:
        self._log = logger
        if self.auth is not None:
            self.auth.log = logger

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (an ``http`` client passed in is owned and closed too)."""
        self.http.close()

    def get_json(self, url: str, *, params: dict[str, Any] | None = None) -> Any:
        """GET and decode the JSON body."""
        return self._json(self.request("GET", url, params=params))

    def paginate(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        paginator: Paginator | None = None,
        data_path: str | None = "data",
    ) -> Iterator[Page]:
        """Yield every page, following ``paginator`` (a cursor in ``next_cursor`` by default).

        ``data_path=None`` reads pages that are a bare JSON array (GitHub style). A page whose
        URL was already read fails with :class:`PaginationError` (before it is yielded again)
        instead of looping.
        """
        paginator = paginator or CursorPaginator()
        url, query = paginator.first_request(url, dict(params or {}))
        number, seen = 0, set()
        while True:
            response = self.request("GET", url, params=query)
            page_url = str(response.request.url)  # as sent: relative and absolute links agree
            if page_url in seen:
                what = f"pagination cycle: page {number} points back to a page already read"
                raise self._fail(PaginationError, what, response)
            seen.add(page_url)
            body = self._json(response)
            items = body if not data_path else dig(body, data_path)
            if not isinstance(items, list):
                where = f"at {data_path!r}" if data_path else "as the page"
                raise self._fail(InvalidResponseError, f"response has no list {where}", response)
            number += 1
            self.stats.add("pages")
            paginator.update_state(body, items, response)
            yield Page(number, items, body)
            if not paginator.has_next_page:
                return
            try:
                url, query = paginator.next_request(url, query)
                target = httpx.URL(url)
            except (httpx.InvalidURL, ValueError) as exc:
                what = f"unusable next-page link ({exc})"
                raise self._fail(PaginationError, what, response) from None
            if target.is_absolute_url and not same_origin(target, self.http.base_url):
                what = f"next-page link leaves the partner's origin for {target.scheme}://"
                what += f"{target.host}; not following it with credentials"
                raise self._fail(PaginationError, what, response)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying as the module docstring describes.

        ``idempotency_key`` (sent as ``Idempotency-Key``) lets a POST or PATCH be retried
        after it may have reached the server; without one it is retried only when the
        connection never opened.
        """
        headers = dict(headers or {})
        if idempotency_key:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        deadline = time.monotonic() + self.deadline if self.deadline else math.inf
        retries, attempt, redirects = 0, 0, 0
        while True:
            attempt += 1
            request = self._build(method, url, params, json_body, headers, deadline)
            self._guard(request, attempt, deadline)
            started = time.perf_counter()
            try:
                response = self._send(request, deadline)
            except httpx.TransportError as exc:
                timed_out = isinstance(exc, httpx.TimeoutException)
                self._record(request, type(exc).__name__, started, attempt)
                self.stats.add("timeouts" if timed_out else "connection_errors")
                self._failed(type(exc).__name__)
                safe = may_retry(method, headers, reached_server=not isinstance(exc, _NEVER_SENT))
                wait = self.retry.backoff(retries + 1)
                if safe and retries < self.retry.max_retries and time.monotonic() + wait < deadline:
                    retries += 1
                    self._sleep(wait)
                    continue
                raise self._transport_error(exc, request, attempt, deadline, safe) from None
            except httpx.DecodingError as exc:
                self._record(request, type(exc).__name__, started, attempt)
                what = f"response body could not be decoded ({exc})"
                raise from_request(InvalidResponseError, what, request, self.redact) from None
            for refused in response.history:  # a 401 the auth answered with a fresh token
                sent = time.perf_counter() - refused.elapsed.total_seconds()
                self._record(refused.request, refused.status_code, sent, attempt)
                self.stats.add("reauthentications")
                attempt += 1
            self._record(request, response.status_code, started, attempt)
            self._observe_budget(response)
            status = response.status_code
            if 300 <= status < 400:
                redirects += 1
                method, url = self._redirect(request, response, redirects, attempt)
                params, json_body = None, (json_body if method == request.method else None)
                continue
            if status < 400:
                self._succeeded()
                return response
            if status in RETRY_STATUSES:
                if status == 429:
                    self.stats.add("rate_limited")
                else:
                    self.stats.add("server_errors")
                    self._failed(status, excerpt(response.text, self.redact))
                wait = self.retry.wait(retries + 1, response.headers.get("Retry-After"))
                if retries < self.retry.max_retries and may_retry(
                    method, headers, reached_server=True
                ):
                    if time.monotonic() + wait >= deadline:
                        raise self._error(request, response, attempt, "and the deadline is near")
                    retries += 1
                    self.stats.add("retries")
                    if status == 429:
                        self.limiter.pause(wait)  # everyone sharing the budget holds off
                    else:
                        self._sleep(wait)
                    continue
            if status < 500:
                self._succeeded()  # a 4xx answer still means the partner is up
            raise self._error(request, response, attempt)

    def _build(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        json_body: Any,
        headers: dict[str, str],
        deadline: float,
    ) -> httpx.Request:
        """The request of one attempt, its timeouts cut to what is left of the deadline."""
        timeout = attempt_timeout(self.http.timeout, deadline) or httpx.USE_CLIENT_DEFAULT
        try:
            # params=None, not {}: httpx replaces a URL's own query with an empty mapping
            return self.http.build_request(
                method,
                url,
                params=params or None,
                json=json_body,
                headers=headers or None,
                timeout=timeout,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            masked = mask_url(url, self.redact)
            raise ClientError(f"invalid URL ({exc})", method=method, url=masked) from None

    def _send(self, request: httpx.Request, deadline: float) -> httpx.Response:
        """Send and read the whole body, with the bearer token, before the deadline."""
        response = self.http.send(request, auth=self.auth, stream=True)
        try:
            if deadline < math.inf:
                response.stream = DeadlineStream(response.stream, request, deadline)  # type: ignore[arg-type]
            response.read()
        finally:
            response.close()
        return response

    def _redirect(
        self, request: httpx.Request, response: httpx.Response, hops: int, attempt: int
    ) -> tuple[str, str]:
        """The method and URL to follow a 3xx with, or a :class:`RedirectError`."""
        try:
            hop = next_hop(
                request, response, origin=self.http.base_url, hops=hops, limit=self.max_redirects
            )
        except RedirectRefused as exc:
            raise self._fail(RedirectError, str(exc), response, attempt) from None
        self.stats.add("redirects")
        return hop

    def _guard(self, request: httpx.Request, attempt: int, deadline: float) -> None:
        """Fail fast while the circuit is open; otherwise wait for the request budget."""
        left = self.breaker.allow() if self.breaker is not None else None
        if self.breaker is not None and left is not None:
            status, body = self.breaker.last_failure
            what = f"circuit open, {left:.1f}s of cool-down left; last failure: {status}"
            code = status if isinstance(status, int) else None
            raise from_request(
                CircuitOpenError,
                what,
                request,
                self.redact,
                attempts=attempt - 1,
                status=code,
                body=body,
            )
        self.limiter.acquire()
        if time.monotonic() >= deadline:
            what = f"deadline of {self.deadline}s passed before attempt {attempt}"
            raise from_request(
                DeadlineExceededError, what, request, self.redact, attempts=attempt - 1
            )

    def _transport_error(
        self,
        exc: httpx.TransportError,
        request: httpx.Request,
        attempt: int,
        deadline: float,
        retriable: bool,
    ) -> HttpApiError:
        error, what = for_transport(exc, past_deadline=time.monotonic() + 0.001 >= deadline)
        unsafe = "" if retriable else " (not retried: the server may have applied it)"
        what = f"request {what}{unsafe} (timeouts: {self._timeouts()})"
        return from_request(error, what, request, self.redact, attempts=attempt)

    def _error(
        self, request: httpx.Request, response: httpx.Response, attempt: int, note: str = ""
    ) -> HttpApiError:
        error, what = for_status(response.status_code)
        return self._fail(error, f"{what} {note}".strip(), response, attempt)

    def _fail(
        self, error: type[HttpApiError], what: str, response: httpx.Response, attempt: int = 1
    ) -> HttpApiError:
        """``error`` for ``response``: masked URL, status and a masked excerpt of the body."""
        return from_response(error, what, response, self.redact, attempts=attempt)

    def _observe_budget(self, response: httpx.Response) -> None:
        """Pause before the partner has to say 429 when its headers say the budget is spent."""
        pause = self.retry.budget_pause(response.headers)
        if pause:
            self.stats.add("server_pauses")
            self.limiter.pause(pause)

    def _record(
        self, request: httpx.Request, status: int | str, started: float, attempt: int
    ) -> None:
        ms = (time.perf_counter() - started) * 1000
        self.stats.latency(ms)
        if self.log.isEnabledFor(logging.INFO):
            self.log.info(
                f"{request.method} {self._masked(request)} -> {status} "
                f"in {ms:.1f} ms (attempt {attempt})"
            )

    def _masked(self, request: httpx.Request) -> str:
        return mask_url(str(request.url), self.redact)

    def _timeouts(self) -> str:
        t = self.http.timeout
        return f"connect {t.connect}s, read {t.read}s, deadline {self.deadline}s"

    def _failed(self, status: int | str | None = None, body: str = "") -> None:
        if self.breaker is not None:
            self.breaker.record_failure(status, body)

    def _succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.record_success()

    @staticmethod
    def _sleep(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self._fail(InvalidResponseError, "response is not JSON", response) from None
