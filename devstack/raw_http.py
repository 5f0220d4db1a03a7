"""HTTP/1.1 requests written byte by byte, for what well-behaved clients refuse to send.

httpx (through h11) will not send a header value with surrounding whitespace, a repeated
header it would merge, or tens of MiB of headers at the pace of a hostile client; the tests
of the receiver's and the gateway's limits need exactly those requests, so they write them
on a plain socket and read the status line back.
"""

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawResponse:
    """The parts of a response the tests look at (or status 0 if the server hung up)."""

    status: int
    headers: dict[str, str]
    body: bytes


def _parse(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        return RawResponse(0, {}, data)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(lines[0].split()[1]), headers, body)


def raw_request(
    url: str,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    header_bytes: bytes = b"",
    timeout: float = 30.0,
) -> RawResponse:
    """Send one request exactly as given (values untouched) and read the whole response.

    ``header_bytes`` is written verbatim after the given headers (e.g. megabytes of padding).
    A connection the server closes or resets before answering gives status 0.
    """
    parts = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}", "Connection: close"]
    lines += [f"{name}:{value}" for name, value in headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    request = "\r\n".join(lines).encode("latin-1") + b"\r\n" + header_bytes + b"\r\n" + body
    received = bytearray()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        # Send from a thread while this one reads: a server that refuses early answers and
        # closes before the request is sent, and the answer must be read before its reset.
        sender = threading.Thread(target=_send_all, args=(sock, request), daemon=True)
        sender.start()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        sender.join(timeout)
    return _parse(bytes(received))


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    try:
        for start in range(0, len(view), 1 << 16):
            sock.sendall(view[start : start + (1 << 16)])
    except OSError:
        pass  # the server answered and closed before reading everything
