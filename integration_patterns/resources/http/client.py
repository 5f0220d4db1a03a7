"""A resilient REST client over httpx: one place that decides what each response means.

Routing: 2xx returns; 401 gets exactly one forced token refresh (in the ``httpx.Auth``
of :mod:`.auth`), then an ``AuthError``;
429 waits for ``Retry-After`` (seconds or HTTP-date, clamped) and pauses every request
sharing the process's budget; 5xx, timeouts and dropped connections retry with
exponential backoff and jitter; any other 4xx fails at once with the status, the masked
URL and an excerpt of the body. A circuit breaker turns a run of failures into fast
failures. Every attempt is logged once (method, masked URL, status, latency, attempt) and
counted in :class:`CallStats`, whose p50/p95 latencies go into run metadata.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from integration_patterns.resources.http.auth import OAuth2ClientCredentials
from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.budget import RateLimiter, ServerHint
from integration_patterns.resources.http.errors import (
    AuthError,
    CircuitOpenError,
    ClientError,
    ConnectionFailedError,
    HttpApiError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
)
from integration_patterns.resources.http.pagination import CursorPaginator, Paginator, dig
from integration_patterns.resources.http.redaction import Redactor, excerpt, mask_url
from integration_patterns.resources.http.retry import RETRY_STATUSES, RetryPolicy, reset_from_header
from integration_patterns.resources.http.stats import CallStats

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page of results: its number (1-based), its items and the whole body."""

    number: int
    items: list[Any]
    body: Any


class RestClient:
    """Calls one partner API; thread-safe; close it (or use ``with``) when done."""

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

    @property
    def log(self) -> logging.Logger:
        """Where every call is logged (the token provider's calls too)."""
        return self._log

    @log.setter
    def log(self, logger: logging.Logger) -> None:
        self._log = logger
        if self.auth is not None:
            self.auth.log = logger

    def __enter__(self) -> RestClient:
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
        data_path: str = "data",
    ) -> Iterator[Page]:
        """Yield every page, following ``paginator`` (a cursor in ``next_cursor`` by default)."""
        paginator = paginator or CursorPaginator()
        url, query = paginator.first_request(url, dict(params or {}))
        number = 0
        while True:
            response = self.request("GET", url, params=query)
            body = self._json(response)
            items = dig(body, data_path)
            if not isinstance(items, list):
                raise HttpApiError(
                    f"response has no list at {data_path!r}",
                    method="GET",
                    url=self._masked(response.request),
                    status=response.status_code,
                    body=excerpt(response.text, self.redact),
                )
            number += 1
            self.stats.add("pages")
            paginator.update_state(body, items)
            yield Page(number, items, body)
            if not paginator.has_next_page:
                return
            url, query = paginator.next_request(url, query)
            self._check_same_origin(url)

    def _check_same_origin(self, url: str) -> None:
        """Refuse a next-page link to another origin: the bearer token would go with it."""
        target, base = httpx.URL(url), self.http.base_url
        if target.is_absolute_url and (target.scheme, target.host, target.port) != (
            base.scheme,
            base.host,
            base.port,
        ):
            raise HttpApiError(
                f"next-page link leaves the partner's origin for {target.scheme}://{target.host}; "
                "not following it with credentials",
                method="GET",
                url=f"{target.scheme}://{target.host}{target.path}",
            )

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """Send one logical request, retrying as the module docstring describes."""
        retries, attempt = 0, 0
        while True:
            attempt += 1
            # params=None, not {}: httpx replaces a URL's own query with an empty mapping
            request = self.http.build_request(method, url, params=params or None, json=json_body)
            self._guard(request, attempt)
            started = time.perf_counter()
            try:
                response = self.http.send(request, auth=self.auth)
                response.read()
            except httpx.TransportError as exc:
                timed_out = isinstance(exc, httpx.TimeoutException)
                self._record(request, type(exc).__name__, started, attempt)
                self.stats.add("timeouts" if timed_out else "connection_errors")
                self._failed()
                if retries < self.retry.max_retries:
                    retries += 1
                    self._sleep(self.retry.backoff(retries))
                    continue
                error = RequestTimeoutError if timed_out else ConnectionFailedError
                what = "timed out" if timed_out else f"connection failed ({type(exc).__name__})"
                raise error(
                    f"request {what} on every attempt (timeouts: {self._timeouts()})",
                    method=method,
                    url=self._masked(request),
                    attempts=attempt,
                ) from None
            for refused in response.history:  # a 401 the auth answered with a fresh token
                sent = time.perf_counter() - refused.elapsed.total_seconds()
                self._record(refused.request, refused.status_code, sent, attempt)
                self.stats.add("reauthentications")
                attempt += 1
            self._record(request, response.status_code, started, attempt)
            self._observe_budget(response)
            status = response.status_code
            if status < 400:
                self._succeeded()
                return response
            if status in RETRY_STATUSES:
                if status == 429:
                    self.stats.add("rate_limited")
                else:
                    self.stats.add("server_errors")
                    self._failed()
                if retries < self.retry.max_retries:
                    retries += 1
                    self.stats.add("retries")
                    wait = self.retry.wait(retries, response.headers.get("Retry-After"))
                    if status == 429:
                        self.limiter.pause(wait)  # everyone sharing the budget holds off
                    else:
                        self._sleep(wait)
                    continue
            if status < 500:
                self._succeeded()  # a 4xx answer still means the partner is up
            raise self._error(method, request, response, attempt)

    def _guard(self, request: httpx.Request, attempt: int) -> None:
        """Fail fast while the circuit is open; otherwise wait for the request budget."""
        if self.breaker is not None:
            left = self.breaker.allow()
            if left is not None:
                raise CircuitOpenError(
                    f"circuit open after repeated failures, {left:.1f}s of cool-down left",
                    method=request.method,
                    url=self._masked(request),
                    attempts=attempt - 1,
                )
        self.limiter.acquire()

    def _error(
        self, method: str, request: httpx.Request, response: httpx.Response, attempt: int
    ) -> HttpApiError:
        status = response.status_code
        error: type[HttpApiError]
        if status == 429:
            error, what = RateLimitedError, "still rate limited"
        elif status >= 500:
            error, what = ServerError, "partner server error"
        elif status == 401:
            error, what = AuthError, "unauthorized even after a token refresh"
        else:
            error, what = ClientError, "request rejected"
        return error(
            what,
            method=method,
            url=self._masked(request),
            status=status,
            body=excerpt(response.text, self.redact),
            attempts=attempt,
        )

    def _observe_budget(self, response: httpx.Response) -> None:
        """Pause before the partner has to say 429 when its headers say the budget is spent."""
        remaining = response.headers.get("X-RateLimit-Remaining")
        reset = reset_from_header(response.headers.get("X-RateLimit-Reset"))
        if remaining is None or reset is None:
            return
        try:
            spent = int(float(remaining)) <= 0
        except ValueError:
            return
        if spent and reset > 0:
            self.stats.add("server_pauses")
            self.limiter.pause(reset)

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
        return f"connect {t.connect}s, read {t.read}s"

    def _failed(self) -> None:
        if self.breaker is not None:
            self.breaker.record_failure()

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
            raise HttpApiError(
                "response is not JSON",
                method=response.request.method,
                url=self._masked(response.request),
                status=response.status_code,
                body=excerpt(response.text, self.redact),
            ) from None
