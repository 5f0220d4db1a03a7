"""Signed webhook deliveries for tests, the demo and the benchmark.

Each ``sign_*`` function builds the headers a real sender of that scheme would send for a
body, so the receiver is exercised exactly as in production. ``signed_delivery`` picks the
scheme and fills in ids; ``sample_event`` makes plausible payloads for the routed types.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets as _secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import harness
from integration_patterns.services.webhook_receiver.config import (
    decode_key,
    secret_variable,
    secrets_variable,
)


def new_standard_secret() -> str:
    """A fresh ``whsec_`` Standard Webhooks secret (32 random bytes)."""
    return "whsec_" + base64.b64encode(_secrets.token_bytes(32)).decode()


def _hex(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign_stripe(
    body: bytes, secrets: Sequence[str], *, timestamp: int | None = None
) -> dict[str, str]:
    """``Stripe-Signature`` with one ``v1`` per secret (as Stripe sends during a roll)."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"v1={_hex(s.encode(), f'{t}.'.encode() + body)}" for s in secrets]
    return {"Stripe-Signature": ",".join(parts), "Content-Type": "application/json"}


def sign_github(body: bytes, secret: str, *, delivery_id: str, event: str) -> dict[str, str]:
    """GitHub's ``X-Hub-Signature-256`` plus its delivery and event headers."""
    return {
        "X-Hub-Signature-256": "sha256=" + _hex(secret.encode(), body),
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Event": event,
        "Content-Type": "application/json",
    }


def sign_standard(
    body: bytes, secrets: Sequence[str], *, msg_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers; one ``v1,<base64>`` entry per ``whsec_`` secret."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{msg_id}.{t}.".encode() + body
    sigs = [
        "v1,"
        + base64.b64encode(hmac.new(decode_key("standard", s), signed, "sha256").digest()).decode()
        for s in secrets
    ]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(t),
        "webhook-signature": " ".join(sigs),
        "Content-Type": "application/json",
    }


def sign_hmac(body: bytes, secret: str, *, delivery_id: str | None = None) -> dict[str, str]:
    """The plain scheme: hex HMAC-SHA256 of the body in ``X-Webhook-Signature``.

    ``delivery_id`` is accepted for symmetry with the other schemes and ignored: this
    scheme's id is the body's own ``id`` (the only signed place for it).
    """
    del delivery_id
    return {"X-Webhook-Signature": _hex(secret.encode(), body), "Content-Type": "application/json"}


def sample_event(event_type: str, n: int = 1, *, delivery_id: str | None = None) -> dict[str, Any]:
    """A payload of ``event_type`` whose entity ids derive from ``n``."""
    data: dict[str, Any]
    if event_type == "order.created":
        data = {
            "order_id": f"ord-{n}",
            "customer_id": f"cus-{n % 97}",
            "amount": 10 + n % 90,
            "currency": "EUR",
            "status": "created",
        }
    elif event_type == "payment.received":
        data = {
            "payment_id": f"pay-{n}",
            "order_id": f"ord-{n}",
            "amount": 10 + n % 90,
            "currency": "EUR",
            "status": "received",
        }
    elif event_type == "user.updated":
        data = {
            "user_id": f"usr-{n % 50}",
            "email": f"user{n % 50}@example.com",
            "name": f"User {n % 50}",
        }
    else:
        data = {"note": f"sample {n}"}
    return {
        "id": delivery_id or f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()),
        "data": data,
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON, as most senders serialise."""
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_delivery(
    scheme: str,
    secrets: Sequence[str],
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers for ``payload`` under ``scheme``; its ``id`` is the delivery id.

    ``secrets`` are the sender's current secrets (Stripe and Standard Webhooks sign with all
    of them; GitHub and the plain scheme with the first).
    """
    body = encode(payload)
    delivery_id = str(payload["id"])
    if scheme == "stripe":
        return body, sign_stripe(body, secrets, timestamp=timestamp)
    if scheme == "github":
        return body, sign_github(
            body, secrets[0], delivery_id=delivery_id, event=str(payload.get("type", "ping"))
        )
    if scheme == "standard":
        return body, sign_standard(body, secrets, msg_id=delivery_id, timestamp=timestamp)
    if scheme == "hmac":
        return body, sign_hmac(body, secrets[0], delivery_id=delivery_id)
    raise ValueError(f"unknown scheme {scheme!r}")


def receiver_env(
    sources: Mapping[str, tuple[str, Sequence[str]]], *, schema: str, **extra: str
) -> dict[str, str]:
    """Environment variables configuring a receiver: ``{name: (scheme, secrets)}``."""
    env = {
        "WEBHOOK_SOURCES": ",".join(f"{name}:{scheme}" for name, (scheme, _) in sources.items()),
        "WEBHOOK_INBOX_SCHEMA": schema,
    }
    for name, (_, secrets) in sources.items():
        # Both variables are written (one empty, which counts as unset) so a value inherited
        # from .env for the other form cannot make the configuration ambiguous.
        one, many = (secrets[0], "") if len(secrets) == 1 else ("", json.dumps(list(secrets)))
        env[secret_variable(name)] = one
        env[secrets_variable(name)] = many
    return env | extra


@dataclass
class ReceiverProcess:
    """A receiver running as a uvicorn subprocess."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        """The end of the process's output, for error messages."""
        return harness.tail(self.log_path, lines)


@contextmanager
def running_receiver(
    env: Mapping[str, str], *, port: int | None = None, startup_timeout: float = 120.0
) -> Iterator[ReceiverProcess]:
    """Start ``python -m integration_patterns.services.webhook_receiver``; stop it on exit.

    The child inherits this process's environment (POSTGRES_* etc.) plus ``env``, and the
    context is entered only once ``/healthz`` answers 200 (importing the app alone takes 15 s
    and more on a loaded 2-core machine, hence the generous default wait).
    """
    port = port or harness.free_port()
    url = f"http://{harness.HOST}:{port}"
    command = [sys.executable, "-m", "integration_patterns.services.webhook_receiver"]
    with harness.running(
        "webhook_receiver",
        [*command, "--port", str(port)],
        ready=lambda: harness.http_ok(f"{url}/healthz"),
        timeout=startup_timeout,
        env=env,
        stop_timeout=15,
    ) as process:
        yield ReceiverProcess(url, process.popen, process.log)


async def post_raw(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive request; far cheaper on shared CPUs than a full client."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
        + body
    )
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
    return int(status_line.split()[1]), await reader.readexactly(length)


async def send_all(
    url: str,
    deliveries: Sequence[tuple[str, bytes, Mapping[str, str]]],
    concurrency: int = 8,
    on_answer: Callable[[int, str], None] | None = None,
) -> list[tuple[int, str]]:
    """POST every ``(source, body, headers)`` over ``concurrency`` connections.

    Returns ``(status, delivery id or '')`` per delivery, in completion order; ``on_answer``
    is called with the same as each answer arrives (e.g. to time it).
    """
    host, port = url.removeprefix("http://").split(":")
    queue = iter(deliveries)
    results: list[tuple[int, str]] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for source, body, headers in queue:
                status, answer = await post_raw(
                    reader, writer, f"/webhooks/{source}", body, headers
                )
                delivery_id = json.loads(answer).get("delivery_id", "")
                results.append((status, delivery_id))
                if on_answer is not None:
                    on_answer(status, delivery_id)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results
