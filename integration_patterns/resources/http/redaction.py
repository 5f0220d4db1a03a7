"""Masking that keeps secrets out of every log line and error of the HTTP client.

Masking happens twice: query parameters and user-info with secret-looking names are
replaced, and any known secret value (client secret, access tokens) is replaced wherever
it appears, since partners sometimes echo tokens back in error bodies.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_PARAM = re.compile(
    r"(secret|token|password|passwd|pwd|key|signature|sig|auth|credential|code)", re.IGNORECASE
)


class Redactor:
    """Replaces known secret values in any text; thread-safe, values can be added later."""

    def __init__(self, *values: str) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Treat ``value`` as a secret from now on (very short values would mask noise)."""
        if value and len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, MASK)
        return text


def mask_url(url: str, redact: Redactor | None = None) -> str:
    """The URL with user-info passwords and secret-looking query parameters masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if SECRET_PARAM.search(query):  # fast path: most URLs carry nothing that looks secret
        query = urlencode(
            [
                (k, MASK if SECRET_PARAM.search(k) else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ],
            safe="*",
        )
    masked = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact(masked) if redact else masked


def excerpt(body: str, redact: Redactor | None = None, limit: int = 300) -> str:
    """The start of a response body, on one line, secrets masked."""
    text = " ".join(body.split())
    text = redact(text) if redact else text
    return text if len(text) <= limit else text[:limit] + "..."
