"""Typed errors for calls to external HTTP APIs.

Every error names the method, the URL with secrets masked (see ``redaction``), the status
and an excerpt of the response body, because an operator reading a failed run needs to
know which call failed and what the partner said, without ever seeing a credential.
"""

from __future__ import annotations


class HttpApiError(Exception):
    """A call to an external API failed; the message is safe to log (secrets masked)."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        body: str = "",
        attempts: int = 1,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.attempts = attempts
        status_text = f" -> {status}" if status is not None else ""
        tail = f": {body}" if body else ""
        super().__init__(
            f"{message}: {method} {url}{status_text} after {attempts} attempt(s){tail}"
        )


class RateLimitedError(HttpApiError):
    """429 kept coming after every retry."""


class ServerError(HttpApiError):
    """5xx kept coming after every retry."""


class AuthError(HttpApiError):
    """401 even after one forced token refresh, or the token endpoint refused us."""


class ClientError(HttpApiError):
    """Another 4xx: our request is wrong or forbidden, so retrying cannot help."""


class RequestTimeoutError(HttpApiError):
    """The partner did not answer within the timeout on any attempt."""


class ConnectionFailedError(HttpApiError):
    """The connection failed or was dropped on every attempt."""


class CircuitOpenError(HttpApiError):
    """Too many consecutive failures: calls fail fast until the cool-down has passed."""


class InvalidResponseError(HttpApiError):
    """The response could not be read as promised: bad compression, not JSON, no list."""


class RedirectError(HttpApiError):
    """A redirect the client will not follow: to another origin, without a target, or too many."""


class PaginationError(HttpApiError):
    """The paginator asked for a page it already fetched: following it would never end."""


class DeadlineExceededError(RequestTimeoutError):
    """The request as a whole (attempts and waits) took longer than its deadline."""
