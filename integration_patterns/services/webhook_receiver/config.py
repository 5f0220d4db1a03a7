"""Receiver settings, read once from the environment at start-up.

Variables:
    WEBHOOK_SOURCES: comma-separated ``name:scheme`` pairs, e.g.
        ``stripe:stripe,github:github,svix:standard,shop:hmac``. Schemes are ``stripe``,
        ``github``, ``standard`` (Standard Webhooks / Svix) and ``hmac`` (plain hex
        HMAC-SHA256 in ``X-Webhook-Signature``).
    WEBHOOK_SECRET_<NAME>: the source's one secret, verbatim: commas, spaces and every other
        character are part of it (only surrounding whitespace is dropped). ``<NAME>`` is the
        source name upper-cased with anything not alphanumeric replaced by ``_``. Standard
        Webhooks secrets must be ``whsec_`` + base64.
    WEBHOOK_SECRETS_<NAME>: instead of the above, several secrets as a JSON array of
        strings, e.g. ``["whsec_new", "whsec_old"]``; every one is accepted, so a rotated
        secret and its successor can both be live. JSON quoting means no character of a
        secret can split it (a comma-separated list let ``a,b`` verify as ``a`` or ``b``).
    WEBHOOK_TOLERANCE_SECONDS: replay window for timestamped schemes (default 300).
    WEBHOOK_MAX_BODY_BYTES: largest body accepted (default 1 MiB); larger gets 413.
    WEBHOOK_MAX_HEADER_BYTES: largest request head (request line and headers) accepted
        (default 16 KiB); larger gets 431 and is never buffered whole.
    WEBHOOK_INBOX_SCHEMA: PostgreSQL schema holding ``webhook_inbox`` (default ``public``).
    WEBHOOK_DB_POOL_SIZE: inbox writer lanes, each holding one connection (default 4); the
        pool gets one more for ``/healthz``.
    POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD: the database,
        the same variables the code location's ``postgres`` resource reads.

Secrets are held as bytes in fields excluded from ``repr`` so they never reach a log line.
"""

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from integration_patterns.inbox import schema_from_env

SCHEMES = ("stripe", "github", "standard", "hmac")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

log = logging.getLogger(__name__)


class ReceiverSettingsError(ValueError):
    """The receiver's environment is incomplete or malformed (names the variable)."""


@dataclass(frozen=True)
class SourceConfig:
    """One sender: its verification scheme and the keys its signatures may use."""

    name: str
    scheme: str
    keys: tuple[bytes, ...] = field(repr=False)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the app needs besides the database connection."""

    sources: Mapping[str, SourceConfig]
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    inbox_schema: str = "public"
    pool_size: int = 4


def secret_variable(source: str) -> str:
    """The environment variable holding a source's one secret."""
    return "WEBHOOK_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", source).upper()


def secrets_variable(source: str) -> str:
    """The environment variable holding a source's secrets as a JSON list (rotation)."""
    return "WEBHOOK_SECRETS_" + re.sub(r"[^A-Za-z0-9]", "_", source).upper()


def source_secrets(env: Mapping[str, str], source: str) -> tuple[str, list[str]]:
    """The variable that configures ``source``'s secrets, and the secrets it holds.

    Raises:
        ReceiverSettingsError: neither or both variables set, or the list is not a JSON array of
            non-empty strings (the message never quotes the value).
    """
    single, several = secret_variable(source), secrets_variable(source)
    one = env.get(single, "").strip()
    many = env.get(several, "").strip()
    if one and many:
        raise ReceiverSettingsError(f"set one of {single} and {several}, not both")
    if one:
        if "," in one:
            log.warning(
                "%s holds a comma: it is read as ONE secret (list several in %s)", single, several
            )
        return single, [one]
    if not many:
        raise ReceiverSettingsError(f"{single} is not set: source {source!r} needs a secret")
    try:
        secrets = json.loads(many)
    except ValueError:
        secrets = None
    if (
        not isinstance(secrets, list)
        or not secrets
        or not all(isinstance(s, str) and s.strip() for s in secrets)
    ):
        raise ReceiverSettingsError(f"{several} must be a JSON array of non-empty strings")
    return several, [s.strip() for s in secrets]


def decode_key(scheme: str, secret: str) -> bytes:
    """The HMAC key a secret stands for: ``whsec_`` base64 for Standard Webhooks, else UTF-8.

    Stripe's ``whsec_...`` endpoint secrets are used verbatim as the key (as stripe-python
    does); only the Standard Webhooks spec base64-encodes the key behind the prefix.
    """
    if scheme != "standard":
        return secret.encode()
    if not secret.startswith("whsec_"):
        raise ReceiverSettingsError("Standard Webhooks secrets must start with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ReceiverSettingsError(
            "Standard Webhooks secret is not valid base64 after 'whsec_'"
        ) from None
    if len(key) < 24:
        raise ReceiverSettingsError("Standard Webhooks secrets must hold at least 24 bytes")
    return key


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ReceiverSettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ReceiverSettingsError(f"{name} must be positive, got {value}")
    return value


def settings_from_env(env: Mapping[str, str] | None = None) -> ReceiverSettings:
    """Read and validate the receiver's settings.

    Raises:
        ReceiverSettingsError: a source without secrets, an unknown scheme or a malformed value.
    """
    env = os.environ if env is None else env
    tolerance = _positive_int(env, "WEBHOOK_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS)
    sources: dict[str, SourceConfig] = {}
    for entry in filter(None, (e.strip() for e in env.get("WEBHOOK_SOURCES", "").split(","))):
        name, _, scheme = entry.partition(":")
        name, scheme = name.strip(), scheme.strip().lower()
        if not _SOURCE_NAME.match(name):
            raise ReceiverSettingsError(f"WEBHOOK_SOURCES: invalid source name {name!r}")
        if scheme not in SCHEMES:
            raise ReceiverSettingsError(
                f"WEBHOOK_SOURCES: source {name!r} has scheme {scheme!r}, "
                f"expected one of {', '.join(SCHEMES)}"
            )
        variable, secrets = source_secrets(env, name)
        try:
            keys = tuple(decode_key(scheme, s) for s in secrets)
        except ReceiverSettingsError as exc:
            raise ReceiverSettingsError(f"{variable}: {exc}") from None
        sources[name] = SourceConfig(name, scheme, keys, tolerance)
    schema = schema_from_env(env)
    return ReceiverSettings(
        sources=sources,
        max_body_bytes=_positive_int(env, "WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        max_header_bytes=_positive_int(env, "WEBHOOK_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
        inbox_schema=schema,
        pool_size=_positive_int(env, "WEBHOOK_DB_POOL_SIZE", 4),
    )
