"""Redirects as RFC 9110 section 15.4 says, for a client that carries credentials.

A 3xx is followed only to the same origin (scheme, host and port), since the bearer token
goes with every request; only up to a limit; and its body is never data. 303 turns any
method but HEAD into GET, and so do 301 and 302 after a POST (what every client does);
307 and 308 repeat the method and body. A 3xx without a usable ``Location`` (300, 304, a
missing or invalid header) cannot be followed.
"""

import httpx


class RedirectRefused(Exception):
    """The redirect will not be followed; the message says why."""


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Whether two URLs share scheme, host and port (RFC 6454)."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def next_hop(
    request: httpx.Request, response: httpx.Response, *, origin: httpx.URL, hops: int, limit: int
) -> tuple[str, str]:
    """The method and URL that follow ``response`` (the ``hops``-th redirect in a row)."""
    location = response.headers.get("Location")
    if response.status_code == 304 or not location:
        raise RedirectRefused("redirect without a Location to follow")
    try:
        target = request.url.join(location.strip())
    except httpx.InvalidURL:
        raise RedirectRefused("redirect to an invalid Location") from None
    if not same_origin(target, origin):
        raise RedirectRefused(
            f"redirect to another origin ({target.scheme}://{target.host}); "
            "not following it with credentials"
        )
    if hops > limit:
        raise RedirectRefused(f"more than {limit} redirects")
    method = request.method
    if (response.status_code == 303 and method != "HEAD") or (
        response.status_code in (301, 302) and method == "POST"
    ):
        method = "GET"
    return method, str(target)
