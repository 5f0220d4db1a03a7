"""A REST API behind OAuth2 client credentials as a Dagster resource.

Configuration (base URL, credentials, timeouts, retry, budget, breaker) arrives from
``dg.EnvVar`` at wiring time; the resource builds one :class:`RestClient` per instance, so
the token is cached across calls. Nothing here knows a particular partner: a pattern that
needs more fields (a source label, say) subclasses it.
"""

import logging
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_patterns.resources.http.breaker import CircuitBreaker
from integration_patterns.resources.http.budget import ServerHint, shared_limiter
from integration_patterns.resources.http.redaction import Redactor
from integration_patterns.resources.http.retry import RetryPolicy

if TYPE_CHECKING:  # httpx is imported when a client is made, not by loading the location
    from integration_patterns.resources.http.client import RestClient


class RestApiResource(dg.ConfigurableResource):
    """A REST API behind OAuth2 client credentials.

    Example:
        ```python
        partner_api = RestApiResource(
            base_url=dg.EnvVar("PARTNER_API_BASE_URL"),
            client_id=dg.EnvVar("PARTNER_API_CLIENT_ID"),
            client_secret=dg.EnvVar("PARTNER_API_CLIENT_SECRET"),
        )

        @dg.asset
        def partner_count(context, partner_api: RestApiResource) -> int:
            client = partner_api.get_client(log=context.log)
            return sum(len(page.items) for page in client.paginate("/v2/data"))
        ```
    """

    base_url: str = Field(description="Root of the API, e.g. https://api.partner.com.")
    token_path: str = Field(
        default="/oauth/token", description="Token endpoint, relative to base_url or absolute."
    )
    client_id: str = Field(description="OAuth2 client id.")
    client_secret: str = Field(repr=False, description="OAuth2 client secret (secret).")
    scope: str = Field(default="", description="Space-separated scopes to request.")
    auth_method: str = Field(
        default="client_secret_basic",
        description="How the client authenticates: client_secret_basic or client_secret_post.",
    )
    token_refresh_margin: float = Field(
        default=30.0, description="Refresh a cached token this many seconds before it expires."
    )
    connect_timeout: float = Field(default=5.0, description="Seconds to open a connection.")
    read_timeout: float = Field(default=30.0, description="Seconds to wait for a response.")
    request_deadline: float = Field(
        default=120.0,
        description="Seconds one request may take in all (attempts, waits, body); 0 = none.",
    )
    max_redirects: int = Field(default=5, description="Same-origin redirects followed.")
    max_retries: int = Field(default=5, description="Retries after the first attempt.")
    backoff_base: float = Field(default=0.5, description="First backoff in seconds (doubles).")
    backoff_cap: float = Field(default=30.0, description="Longest backoff in seconds.")
    max_retry_after: float = Field(
        default=120.0,
        description="Longest wait a server may ask for (Retry-After, X-RateLimit-Reset).",
    )
    rate_limit_per_minute: int = Field(
        default=0, description="Requests per minute for the whole process; 0 = no budget."
    )
    rate_limit_burst: int = Field(
        default=1, description="Requests allowed back to back; >1 may break sliding windows."
    )
    breaker_threshold: int = Field(
        default=5, description="Consecutive failures that open the circuit."
    )
    breaker_cooldown: float = Field(
        default=30.0, description="Seconds the open circuit fails fast before one probe."
    )

    _client: "RestClient | None" = PrivateAttr(default=None)
    _breaker: CircuitBreaker | None = PrivateAttr(default=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the connection pool; runs even when the run failed."""
        self.close()

    def close(self) -> None:
        """Close the client, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def get_client(self, *, log: logging.Logger | None = None) -> "RestClient":
        """The resource's client (one per resource instance, so the token is cached)."""
        if self._client is None:
            import httpx

            from integration_patterns.resources.http.auth import OAuth2ClientCredentials
            from integration_patterns.resources.http.client import RestClient

            redact = Redactor(self.client_secret)
            http = httpx.Client(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                headers={"User-Agent": "integration-patterns/0.1"},
            )
            auth = OAuth2ClientCredentials(
                token_url=urljoin(self.base_url, self.token_path),
                client_id=self.client_id,
                client_secret=self.client_secret,
                scope=self.scope,
                auth_method=self.auth_method,
                refresh_margin=self.token_refresh_margin,
                http=http,
                redact=redact,
                deadline=self.request_deadline or None,
            )
            self._breaker = CircuitBreaker(self.breaker_threshold, self.breaker_cooldown)
            limiter = (
                shared_limiter(self.base_url, self.rate_limit_per_minute, self.rate_limit_burst)
                if self.rate_limit_per_minute > 0
                else ServerHint()
            )
            self._client = RestClient(
                self.base_url,
                auth=auth,
                http=http,
                retry=RetryPolicy(
                    max_retries=self.max_retries,
                    backoff_base=self.backoff_base,
                    backoff_cap=self.backoff_cap,
                    max_retry_after=self.max_retry_after,
                ),
                limiter=limiter,
                breaker=self._breaker,
                redact=redact,
                deadline=self.request_deadline or None,
                max_redirects=self.max_redirects,
            )
        if log is not None:
            self._client.log = log
        return self._client
