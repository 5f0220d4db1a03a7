"""Typed errors for calls to external HTTP APIs.

Every error names the method, the URL with secrets masked (see ``redaction``), the status
and an excerpt of the response body, because an operator reading a failed run needs to
know which call failed and what the partner said, without ever seeing a credential.
"""

import httpx

from integration_patterns.resources.http.redaction import Redactor, excerpt, mask_url


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


def for_status(status: int) -> tuple[type[HttpApiError], str]:
    """The error class for a final ``status``, and what it means in words."""
    if status == 429:
        return RateLimitedError, "still rate limited"
    if status >= 500:
        return ServerError, "partner server error"
    if status == 401:
        return AuthError, "unauthorized even after a token refresh"
    return ClientError, "request rejected"


def from_response(
    error: type[HttpApiError],
    what: str,
    response: httpx.Response,
    redact: Redactor,
    *,
    attempts: int = 1,
) -> HttpApiError:
    """``error`` for ``response``: its method, masked URL, status and a masked body excerpt."""
    return error(
        what,
        method=response.request.method,
        url=mask_url(str(response.request.url), redact),
        status=response.status_code,
        body=excerpt(response.text, redact),
        attempts=attempts,
    )


def from_request(
    error: type[HttpApiError],
    what: str,
    request: httpx.Request,
    redact: Redactor,
    *,
    attempts: int = 1,
    status: int | None = None,
    body: str = "",
) -> HttpApiError:
    """``error`` for a request that got no (usable) response: method and masked URL."""
    url = mask_url(str(request.url), redact)
    return error(what, method=request.method, url=url, status=status, body=body, attempts=attempts)


def for_transport(exc: Exception, *, past_deadline: bool) -> tuple[type[HttpApiError], str]:
    """The error class for a transport failure, and what happened in words."""
    if past_deadline:
        return DeadlineExceededError, "exceeded its deadline"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError, "timed out"
    return ConnectionFailedError, f"connection failed ({type(exc).__name__})"
