"""A TCP proxy that drops its first connections: a service that is briefly unavailable.

Tests point a resource at the proxy instead of the real server to see a transient failure
(the peer accepts, then closes at once, as a restarting broker does) followed by recovery,
without stopping the shared service.
"""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FlakyProxy:
    """Forward 127.0.0.1:<port> to ``upstream``, closing the first ``drop_first`` clients."""

    def __init__(self, upstream: tuple[str, int], *, drop_first: int) -> None:
        self.upstream = upstream
        self.drop_first = drop_first
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drop_first:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def start(self) -> "FlakyProxy":
        """Start accepting in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting (open forwarded connections end with their peers)."""
        self._closed.set()
        self._listener.close()


@contextmanager
def flaky_proxy(upstream: tuple[str, int], *, drop_first: int) -> Iterator[FlakyProxy]:
    """A started ``FlakyProxy``, closed on exit."""
    proxy = FlakyProxy(upstream, drop_first=drop_first).start()
    try:
        yield proxy
    finally:
        proxy.close()
