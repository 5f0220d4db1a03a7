"""A total deadline per request: attempts, waits and body reads together.

httpx's timeouts bound each socket operation, so a server that drips its body a byte at a
time inside the read timeout can hold a request for ever. Each attempt's timeouts are cut
to what is left of the deadline, and the body is read through a stream that stops with a
timeout once the deadline has passed.
"""

import math
import time
from collections.abc import Iterator

import httpx


def attempt_timeout(configured: httpx.Timeout, deadline: float) -> httpx.Timeout | None:
    """``configured`` with every part cut to the time left; None without a deadline."""
    if deadline == math.inf:
        return None
    left = max(0.001, deadline - time.monotonic())
    parts = (configured.connect, configured.read, configured.write, configured.pool)
    connect, read, write, pool = (left if part is None else min(part, left) for part in parts)
    return httpx.Timeout(connect=connect, read=read, write=write, pool=pool)


class DeadlineStream(httpx.SyncByteStream):
    """A response body that stops with ``httpx.ReadTimeout`` once ``deadline`` has passed."""

    def __init__(self, stream: httpx.SyncByteStream, request: httpx.Request, deadline: float):
        self._stream, self._request, self._deadline = stream, request, deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout(
                    "deadline passed while reading the body", request=self._request
                )
            yield chunk

    def close(self) -> None:
        """Close the underlying stream (and so the connection)."""
        self._stream.close()
