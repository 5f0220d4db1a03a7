"""Oversized requests against the real receiver and gateway: refused early, others unharmed.

uvicorn (httptools) sets no limit on request headers: tens of MiB of them were read in
full and accepted, the worker's memory grew by as much, and other deliveries waited
seconds. Both services now answer 431 once a request's head passes the cap, before
buffering it, and 413 once its body does, so a whole request is bounded by the two caps.
The requests are written on raw sockets: well-behaved clients refuse to send them.
"""

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from psycopg import sql

from devstack.gateway_server import gateway_server
from devstack.harness import free_port
from devstack.raw_http import raw_request
from devstack.webhook_fixtures import (
    encode,
    receiver_env,
    running_receiver,
    sample_event,
    sign_hmac,
)
from integration_patterns_tests.conftest import postgres_from_env

HEADER_CAP = 8192
BODY_CAP = 4096
SECRET = "limits-" + uuid.uuid4().hex


@dataclass
class Service:
    """A running service: where to send, what a normal request is, and its process id."""

    name: str
    url: str
    path: str
    pid: int

    def normal(self, client: httpx.Client) -> httpx.Response:
        """A request that must keep being served while others are refused."""
        if self.name == "receiver":
            body = encode(sample_event("order.created"))
            return client.post(self.url + self.path, content=body, headers=sign_hmac(body, SECRET))
        return client.get(self.url + "/openapi.json")

    def normal_status(self) -> int:
        return 202 if self.name == "receiver" else 200

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def _pid_serving(port: int) -> int:
    """The process whose command line serves ``--port port`` (the gateway subprocess)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"integration_patterns.services.gateway" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no gateway process on port {port}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Service]:
    schema = f"wh_limits_{uuid.uuid4().hex[:8]}"
    env = receiver_env(
        {"shop": ("hmac", [SECRET])},
        schema=schema,
        WEBHOOK_MAX_HEADER_BYTES=str(HEADER_CAP),
        WEBHOOK_MAX_BODY_BYTES=str(BODY_CAP),
    )
    try:
        with running_receiver(env) as proc:
            yield Service("receiver", proc.url, "/webhooks/shop", proc.process.pid)
    finally:
        postgres = postgres_from_env()
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        postgres.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[Service]:
    # No Dagster behind it: the limits sit in front of everything, /openapi.json is local.
    env = {"GATEWAY_MAX_HEADER_BYTES": str(HEADER_CAP), "GATEWAY_MAX_BODY_BYTES": str(BODY_CAP)}
    dead_dagster = f"http://127.0.0.1:{free_port()}"
    with gateway_server(dead_dagster, secret=SECRET * 2, env=env) as url:
        port = int(url.rsplit(":", 1)[1])
        yield Service("gateway", url, "/api/v1/jobs/platform_smoke/runs", _pid_serving(port))


@pytest.fixture(params=["receiver", "gateway"])
def service(request: pytest.FixtureRequest) -> Service:
    return request.getfixturevalue(request.param)


OVERSIZED = [
    # (case, headers, extra raw header bytes, path suffix)
    ("one 64 KiB header", [("X-Pad", "a" * 65536)], b"", ""),
    ("one 20 MiB header", [], b"X-Pad: " + b"a" * (20 << 20) + b"\r\n", ""),
    ("2000 small headers", [(f"X-H{i}", "v" * 8) for i in range(2000)], b"", ""),
    ("a 16 KiB query string", [], b"", "?q=" + "a" * 16384),
    ("one header just over the cap", [("X-Pad", "a" * HEADER_CAP)], b"", ""),
]


@pytest.mark.parametrize(
    ("headers", "raw", "query"), [c[1:] for c in OVERSIZED], ids=[c[0] for c in OVERSIZED]
)
def test_oversized_heads_get_431_quickly(
    service: Service, headers: list[tuple[str, str]], raw: bytes, query: str
) -> None:
    started = time.perf_counter()
    response = raw_request(
        service.url, "POST", service.path + query, headers, b"{}", header_bytes=raw
    )
    assert response.status == 431, response
    assert b"request headers exceed" in response.body
    assert time.perf_counter() - started < 5


def test_a_head_under_the_cap_is_served(service: Service) -> None:
    padded = [("X-Pad", "a" * (HEADER_CAP - 1024))]
    response = raw_request(service.url, "GET", "/openapi.json", padded)
    assert response.status == 200
    # The same connection handling serves the next request normally (nothing left over).
    with httpx.Client(timeout=10) as client:
        assert service.normal(client).status_code == service.normal_status()


def test_a_body_over_the_cap_gets_413(service: Service) -> None:
    body = b'{"pad": "' + b"x" * BODY_CAP + b'"}'
    headers = [("Content-Type", "application/json")]
    response = raw_request(service.url, "POST", service.path, headers, body)
    assert response.status == 413


def test_many_concurrent_oversized_heads_neither_grow_memory_nor_stall_others(
    service: Service,
) -> None:
    attackers, size = 12, 16 << 20  # 192 MiB of headers in flight
    with httpx.Client(timeout=10) as client:
        for _ in range(5):  # warm up, so the baseline RSS includes the normal path
            service.normal(client)
    rss_before = service.rss_bytes()
    statuses: list[int] = []
    padding = b"X-Pad: " + b"a" * size + b"\r\n"

    def attack() -> None:
        response = raw_request(service.url, "POST", service.path, header_bytes=padding)
        statuses.append(response.status)

    threads = [threading.Thread(target=attack) for _ in range(attackers)]
    latencies: list[float] = []
    peak_rss = rss_before
    with httpx.Client(timeout=10) as client:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads) or len(latencies) < 20:
            started = time.perf_counter()
            assert service.normal(client).status_code == service.normal_status()
            latencies.append(time.perf_counter() - started)
            peak_rss = max(peak_rss, service.rss_bytes())
        for thread in threads:
            thread.join()
    # Every attacker was refused (or cut off once refused), none was accepted.
    assert all(status in (431, 0) for status in statuses), statuses
    assert statuses.count(431) >= attackers // 2, statuses
    # Memory did not grow by the attack's size, and normal traffic kept flowing.
    assert peak_rss - rss_before < 48 << 20, (rss_before, peak_rss)
    assert statistics.median(latencies) < 0.5 and max(latencies) < 3, latencies
