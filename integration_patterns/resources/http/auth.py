"""OAuth2 client-credentials tokens as an ``httpx.Auth``: fetched once, cached until expiry.

One provider is shared by every request of a client (and every thread): the lock makes
sure a burst of callers at expiry triggers one token request, not one each. As an
``httpx.Auth`` it puts the bearer token on each request and, after a 401, refreshes the
token that was refused and sends the request once more; if another thread already replaced
that token, the new one is used without a second round trip, so a revocation costs
exactly one refresh. The client secret and every
token are registered with the :class:`Redactor`, so they are masked wherever they might be
logged or raised.
"""

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Generator
from urllib.parse import quote

import httpx

from integration_patterns.resources.http.deadline import DeadlineStream, attempt_timeout
from integration_patterns.resources.http.errors import AuthError, ServerError, for_transport
from integration_patterns.resources.http.redaction import Redactor, excerpt, mask_url

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OAuth2ClientCredentials(httpx.Auth):
    """Access tokens for ``client_id`` from ``token_url`` (RFC 6749 section 4.4)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        auth_method: str = "client_secret_basic",
        refresh_margin: float = 30.0,
        http: httpx.Client,
        redact: Redactor,
        attempts: int = 3,
        deadline: float | None = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        if auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {AUTH_METHODS}, got {auth_method!r}")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.auth_method = auth_method
        self.refresh_margin = refresh_margin
        self._http = http
        self._redact = redact
        self._attempts = attempts
        self.deadline = deadline
        self._clock = clock
        self.log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetched = 0
        self.forced_refreshes = 0
        redact.add(client_secret)
        redact.add_basic(client_id, client_secret)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with the bearer token; after a 401, once more with a fresh one."""
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            response.read()  # release the connection before the token request
            request.headers["Authorization"] = f"Bearer {self.refresh(token)}"
            yield request

    def token(self) -> str:
        """A valid access token, from the cache unless it expires within the margin."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self.refresh_margin:
                self._fetch()
            assert self._token is not None
            return self._token

    def refresh(self, refused: str) -> str:
        """Replace ``refused`` (the token a 401 rejected) unless another caller already did."""
        with self._lock:
            if self._token == refused:
                self.forced_refreshes += 1
                self._fetch()
            assert self._token is not None
            return self._token

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers: dict[str, str] = {}
        if self.auth_method == "client_secret_basic":
            # RFC 6749 2.3.1: form-urlencode id and secret before base64 (httpx.BasicAuth doesn't)
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self.client_id, "client_secret": self._secret}
        url = mask_url(self.token_url, self._redact)
        deadline = time.monotonic() + self.deadline if self.deadline else math.inf
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            started = time.perf_counter()
            try:
                response = self._post(form, headers, deadline)
                self._logged(url, response.status_code, started, attempt)
            except httpx.DecodingError as exc:
                self._logged(url, type(exc).__name__, started, attempt)
                raise AuthError(
                    f"token response could not be decoded ({exc})",
                    method="POST",
                    url=url,
                    attempts=attempt,
                ) from None
            except httpx.TransportError as exc:
                self._logged(url, type(exc).__name__, started, attempt)
                past = time.monotonic() + min(0.2 * 2**attempt, 2.0) >= deadline
                error, what = for_transport(exc, past_deadline=past)
                last = error(f"token request {what}", method="POST", url=url, attempts=attempt)
                if past:
                    break
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if response.status_code >= 500:
                last = ServerError(
                    "token endpoint error",
                    method="POST",
                    url=url,
                    status=response.status_code,
                    body=excerpt(response.text, self._redact),
                    attempts=attempt,
                )
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if response.status_code != 200:
                raise AuthError(
                    "token request refused",
                    method="POST",
                    url=url,
                    status=response.status_code,
                    body=excerpt(response.text, self._redact),
                    attempts=attempt,
                )
            token, lifetime = self._parse(response, url, attempt)
            self._redact.add(token)
            self._token = token
            self._expires_at = self._clock() + lifetime
            self.fetched += 1
            return
        assert last is not None
        raise last

    def _post(
        self, form: dict[str, str], headers: dict[str, str], deadline: float
    ) -> httpx.Response:
        """POST to the token endpoint and read the answer before ``deadline``."""
        timeout = attempt_timeout(self._http.timeout, deadline) or httpx.USE_CLIENT_DEFAULT
        request = self._http.build_request(
            "POST", self.token_url, data=form, headers=headers, timeout=timeout
        )
        response = self._http.send(request, stream=True)
        try:
            if deadline < math.inf:
                response.stream = DeadlineStream(response.stream, request, deadline)  # type: ignore[arg-type]
            response.read()
        finally:
            response.close()
        return response

    def _parse(self, response: httpx.Response, url: str, attempt: int) -> tuple[str, float]:
        """The access token and its lifetime in seconds, or an ``AuthError`` saying why not.

        RFC 6749 section 5.1: a JSON object with a string ``access_token`` of ``token_type``
        bearer (RFC 6750; a missing type is taken as bearer); ``expires_in``
        is recommended, so without it the token is kept an hour, but a value that is not a
        finite positive number would make the cache never (or always) refresh.
        """

        def refused(why: str) -> AuthError:
            # no excerpt: a token response that cannot be read may still hold a credential
            return AuthError(
                f"token response {why}",
                method="POST",
                url=url,
                status=response.status_code,
                body=f"({len(response.content)} bytes, {response.headers.get('content-type')})",
                attempts=attempt,
            )

        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise refused("is not JSON") from None
        if not isinstance(body, dict):
            raise refused("is not a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise refused("without a usable access_token")
        self._redact.add(token)  # before any error below quotes the body
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise refused(f"with token_type {body.get('token_type')!r}, not bearer")
        expires_in = body.get("expires_in", 3600)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            raise refused("without a usable expires_in") from None
        if isinstance(expires_in, bool) or not math.isfinite(lifetime) or lifetime <= 0:
            raise refused("without a usable expires_in")
        return token, lifetime

    def _logged(self, url: str, status: int | str, started: float, attempt: int) -> None:
        ms = (time.perf_counter() - started) * 1000
        self.log.info(f"POST {url} -> {status} in {ms:.1f} ms (attempt {attempt}, token)")
