"""Masking that keeps secrets out of every log line and error of the HTTP client.

Masking happens twice: query parameters and user-info with secret-looking names are
replaced, and any known secret is replaced wherever it appears, since partners sometimes
echo requests (and so credentials) back in error bodies. A secret travels in more forms
than its raw text: URL-encoded in a form or query (``%2B`` or ``+`` for a space, either
case of hex digit), JSON-escaped, and inside HTTP Basic's base64 of ``id:secret``; every
form is masked.
"""

import base64
import json
import re
import threading
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_PARAM = re.compile(
    r"(secret|token|password|passwd|pwd|key|signature|sig|auth|credential|code)", re.IGNORECASE
)
_MIN_LENGTH = 4  # shorter values would mask noise


def encoded_forms(value: str) -> set[str]:
    """The text forms in which ``value`` can appear in a URL, a form, JSON or a log line."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms |= {form.replace("/", "\\/") for form in forms}  # JSON may escape the solidus
    return {form for form in forms if len(form) >= _MIN_LENGTH}


def basic_credentials(user: str, password: str) -> set[str]:
    """HTTP Basic's base64 of ``user:password`` (raw and form-encoded pair, RFC 6749 2.3.1)."""
    pairs = {f"{user}:{password}", f"{quote(user, safe='')}:{quote(password, safe='')}"}
    pairs |= {f"{quote_plus(user)}:{quote_plus(password)}"}
    forms: set[str] = set()
    for pair in pairs:
        encoded = base64.b64encode(pair.encode()).decode()
        forms |= {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(pair.encode()).decode()}
    return forms


def _pattern(form: str) -> str:
    """A regex for ``form`` whose percent-escapes match either case of hex digit."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", form)
    return "".join(
        f"%[{p[1].upper()}{p[1].lower()}][{p[2].upper()}{p[2].lower()}]"
        if re.fullmatch(r"%[0-9A-Fa-f]{2}", p)
        else re.escape(p)
        for p in parts
    )


class Redactor:
    """Replaces known secrets, in every encoded form, in any text; thread-safe."""

    def __init__(self, *values: str) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._regex: re.Pattern[str] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Treat ``value`` (and its URL-, form- and JSON-encoded forms) as a secret."""
        if value and len(value) >= _MIN_LENGTH:
            self._add_forms(encoded_forms(value))

    def add_basic(self, user: str, password: str) -> None:
        """Treat the HTTP Basic credentials of ``user:password`` as a secret too."""
        if password:
            self._add_forms(basic_credentials(user, password))

    def _add_forms(self, forms: set[str]) -> None:
        with self._lock:
            if not forms <= self._forms:
                self._forms |= forms
                longest_first = sorted(self._forms, key=len, reverse=True)
                self._regex = re.compile("|".join(_pattern(form) for form in longest_first))

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        regex = self._regex
        return regex.sub(MASK, text) if regex is not None else text


def mask_url(url: str, redact: Redactor | None = None) -> str:
    """The URL with user-info passwords and secret-looking query parameters masked."""
    try:
        parts = urlsplit(str(url))
    except ValueError:  # not a URL at all: show no more than its start, secrets masked
        start = str(url).split("?", 1)[0][:100]
        return redact(start) if redact else start
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
    if redact:  # before and after folding whitespace, which may sit inside a secret
        text = redact(" ".join(redact(body).split()))
    else:
        text = " ".join(body.split())
    return text if len(text) <= limit else text[:limit] + "..."
