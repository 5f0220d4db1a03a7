"""HTTP APIs: OAuth2 client credentials (``httpx.Auth``), a resilient REST client, paginators.

One module per concept: ``auth`` (tokens), ``client`` (what each response means, logging),
``retry`` (backoff and the waits a server suggests), ``budget`` (the process-wide request
budget), ``breaker`` (circuit breaker), ``pagination`` (paginators), ``redaction``
(masking secrets), ``errors`` (typed errors), ``stats`` (counters, latency percentiles)
and ``resource`` (the Dagster resource).
"""

from integration_patterns.resources.http.auth import OAuth2ClientCredentials
from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.budget import RateLimiter, ServerHint, shared_limiter
from integration_patterns.resources.http.client import Page, RestClient
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
from integration_patterns.resources.http.pagination import (
    CursorPaginator,
    NextLinkPaginator,
    PageNumberPaginator,
    Paginator,
)
from integration_patterns.resources.http.redaction import Redactor, mask_url
from integration_patterns.resources.http.resource import RestApiResource
from integration_patterns.resources.http.retry import RetryPolicy, parse_retry_after
from integration_patterns.resources.http.stats import CallStats

__all__ = [
    "AuthError",
    "CallStats",
    "CircuitBreaker",
    "CircuitOpenError",
    "ClientError",
    "ConnectionFailedError",
    "CursorPaginator",
    "HttpApiError",
    "NextLinkPaginator",
    "OAuth2ClientCredentials",
    "Page",
    "PageNumberPaginator",
    "Paginator",
    "RateLimitedError",
    "RateLimiter",
    "Redactor",
    "RequestTimeoutError",
    "RestApiResource",
    "RestClient",
    "RetryPolicy",
    "ServerError",
    "ServerHint",
    "mask_url",
    "parse_retry_after",
    "shared_limiter",
]
