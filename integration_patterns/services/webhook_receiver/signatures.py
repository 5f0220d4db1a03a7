"""One verifier per signature scheme, each over the raw body exactly as received.

Every verifier takes the request headers (a case-insensitive mapping), the raw body, the
source's keys (several during a rotation: any may match) and the current time, and either
returns what the headers say about the delivery or raises ``SignatureError``. Comparisons use
``hmac.compare_digest``; errors name what was wrong with the request, never the expected
value.

Whitespace around a header value, or around the items of a list-valued header, is not part
of the value (RFC 9110 section 5.5), yet the HTTP server hands trailing spaces and tabs
through: every value is stripped before it is used, including inside the signed content.
Hex digests compare case-insensitively (upper-case hex is the same number).
"""

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


class SignatureError(Exception):
    """The delivery's signature is missing, malformed, wrong or outside the replay window."""


@dataclass(frozen=True)
class Verified:
    """Facts a verified delivery's headers carry (None when the scheme has no such header)."""

    delivery_id: str | None = None
    event_type: str | None = None
    id_signed: bool = True
    """False when the delivery id came from an unsigned header (GitHub): the inbox then also
    deduplicates on the body's digest, or a captured body could be replayed as new."""


Verifier = Callable[[Mapping[str, str], bytes, Sequence[bytes], float, int], Verified]


def _hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _as_bytes(value: str) -> bytes:
    # Header values arrive latin-1 decoded; compare as bytes so odd characters cannot raise.
    return value.strip().encode("latin-1", "replace")


def _hex_bytes(value: str) -> bytes:
    # Hex digits in either case stand for the same digest.
    return _as_bytes(value).lower()


def _any_matches(expected: Sequence[bytes], offered: Sequence[bytes]) -> bool:
    # Check every pair without stopping early, so timing does not reveal which key matched.
    matched = False
    for want in expected:
        for got in offered:
            matched |= hmac.compare_digest(want, got)
    return matched


def _timestamp(raw: str, header: str) -> int:
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise SignatureError(f"{header} is not a unix timestamp")
    return int(raw)


def verify_stripe(
    headers: Mapping[str, str], body: bytes, keys: Sequence[bytes], now: float, tolerance: int
) -> Verified:
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...][,v0=...]`` over ``"{t}.{body}"``.

    Only ``v1`` entries count (a ``v0`` test signature must not downgrade the check); any
    ``v1`` may match, which is how Stripe signs during a secret roll. Like stripe-python,
    only timestamps older than ``tolerance`` are refused.
    """
    header = headers.get("stripe-signature")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: str | None = None
    offered: list[bytes] = []
    for item in header.split(","):
        scheme, _, value = item.partition("=")
        scheme, value = scheme.strip(), value.strip()
        if scheme == "t":
            timestamp = value
        elif scheme == "v1" and value:
            offered.append(_hex_bytes(value))
    if timestamp is None or not offered:
        raise SignatureError("Stripe-Signature lacks t= or a v1= signature")
    t = _timestamp(timestamp, "Stripe-Signature t")
    signed = f"{t}.".encode()
    expected = [_hmac_sha256(key, signed, body).hex().encode() for key in keys]
    if not _any_matches(expected, offered):
        raise SignatureError("no v1 signature matches")
    if t < now - tolerance:
        raise SignatureError("Stripe-Signature timestamp is outside the tolerance")
    return Verified()


def verify_github(
    headers: Mapping[str, str], body: bytes, keys: Sequence[bytes], now: float, tolerance: int
) -> Verified:
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body; no timestamp is signed.

    Replays are absorbed by deduplicating on ``X-GitHub-Delivery`` instead.
    """
    header = headers.get("x-hub-signature-256")
    if not header:
        raise SignatureError("missing X-Hub-Signature-256 header")
    prefix, _, value = header.partition("=")
    if prefix.strip().lower() != "sha256" or not value.strip():
        raise SignatureError("X-Hub-Signature-256 is not sha256=<hex>")
    expected = [_hmac_sha256(key, body).hex().encode() for key in keys]
    if not _any_matches(expected, [_hex_bytes(value)]):
        raise SignatureError("X-Hub-Signature-256 does not match")
    return Verified(
        delivery_id=headers.get("x-github-delivery"),
        event_type=headers.get("x-github-event"),
        id_signed=False,
    )


def _standard_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """``webhook-id/-timestamp/-signature``, or Svix's ``svix-*`` names for the same three.

    The family is taken whole (never an id from one and a signature from the other).
    """
    for family in ("webhook", "svix"):
        values = [headers.get(f"{family}-{part}") for part in ("id", "timestamp", "signature")]
        if any(values):
            if not all(values):
                raise SignatureError(f"missing {family}-id, -timestamp or -signature")
            msg_id, raw_ts, signature = (v.strip() for v in values if v is not None)
            return msg_id, raw_ts, signature
    raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")


def verify_standard(
    headers: Mapping[str, str], body: bytes, keys: Sequence[bytes], now: float, tolerance: int
) -> Verified:
    """Standard Webhooks: ``webhook-signature: v1,<base64> [v1,<base64> ...]``.

    The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; timestamps too old
    *or* too new are refused, as the reference library does. Svix senders use the same
    scheme under ``svix-id`` / ``svix-timestamp`` / ``svix-signature``; both are accepted.
    """
    msg_id, raw_ts, header = _standard_headers(headers)
    if not msg_id:
        raise SignatureError("webhook-id is empty")
    t = _timestamp(raw_ts, "webhook-timestamp")
    offered = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        if version == "v1" and value.strip():
            offered.append(_as_bytes(value))
    if not offered:
        raise SignatureError("webhook-signature has no v1 entry")
    signed = f"{msg_id}.{t}.".encode("latin-1", "replace")
    expected = [base64.b64encode(_hmac_sha256(key, signed, body)) for key in keys]
    if not _any_matches(expected, offered):
        raise SignatureError("no v1 signature matches")
    if abs(now - t) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    return Verified(delivery_id=msg_id)


def verify_hmac(
    headers: Mapping[str, str], body: bytes, keys: Sequence[bytes], now: float, tolerance: int
) -> Verified:
    """The plain scheme: hex HMAC-SHA256 of the raw body in ``X-Webhook-Signature``.

    Nothing but the body is signed and there is no timestamp, so the delivery id must come
    from the signed body (its ``id``; a body without one is refused). An unsigned
    ``X-Webhook-Id`` would let a captured request be replayed as a "new" event just by
    changing that header; from the body's id, the replay is a duplicate.
    """
    header = headers.get("x-webhook-signature")
    if not header:
        raise SignatureError("missing X-Webhook-Signature header")
    expected = [_hmac_sha256(key, body).hex().encode() for key in keys]
    if not _any_matches(expected, [_hex_bytes(header)]):
        raise SignatureError("X-Webhook-Signature does not match")
    return Verified(delivery_id=None)


VERIFIERS: dict[str, Verifier] = {
    "stripe": verify_stripe,
    "github": verify_github,
    "standard": verify_standard,
    "hmac": verify_hmac,
}
