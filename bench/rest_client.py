"""REST client: what the resilience costs, and whether the request budget is held.

1. "vs bare httpx": pages per second through ``RestClient`` (token cache, budget check,
   breaker, retry routing, masked logging of every call, statistics) with no rate limit,
   against a bare httpx loop over the same simulator, alternating, median of several
   repetitions. Small pages, so per-request overhead dominates (the client's worst case).
2. "rate held": with a budget of R requests per minute, the rate achieved over a window
   (goal at least 0.95 R), the highest rate seen in any one-second window (never above R)
   and the simulator's count of limit violations.
"""

import logging
import statistics
import time

import httpx

from bench.report import Comparison, write
from devstack.partner_api.process import SimulatorProcess
from integration_patterns.defs.external_api.resources import PartnerApiResource
from integration_patterns.resources.http.budget import RateLimiter

CLIENT_ID, SECRET = "bench-client", "bench-secret-value"
PAGES, PAGE_SIZE, REPETITIONS = 300, 10, 7
RATE_PER_MINUTE, WINDOW_SECONDS = 600, 20.0


def bare_httpx(sim: SimulatorProcess) -> float:
    """Pages per second: a token once, then a cursor loop with no checks at all."""
    with httpx.Client(base_url=sim.url) as http:
        form = {"grant_type": "client_credentials", "scope": "records:read"}
        token = http.post("/oauth/token", data=form, auth=(CLIENT_ID, SECRET)).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        params: dict[str, str | int] = {"limit": PAGE_SIZE}
        pages, started = 0, time.perf_counter()
        while True:
            body = http.get("/v2/data", params=params, headers=headers).json()
            pages += 1
            if not body["next_cursor"]:
                break
            params = {"limit": PAGE_SIZE, "cursor": body["next_cursor"]}
        return pages / (time.perf_counter() - started)


def resource(sim: SimulatorProcess, **overrides) -> PartnerApiResource:
    return PartnerApiResource(
        base_url=sim.url, client_id=CLIENT_ID, client_secret=SECRET, **overrides
    )


def ours(sim: SimulatorProcess, log: logging.Logger) -> float:
    """Pages per second through the resource's client, every call logged."""
    api = resource(sim)
    client = api.get_client(log=log)
    if client.auth:
        client.auth.token()  # the baseline fetches its token untimed too
    try:
        pages, started = 0, time.perf_counter()
        for _ in client.paginate("/v2/data", params={"limit": PAGE_SIZE}):
            pages += 1
        return pages / (time.perf_counter() - started)
    finally:
        api.close()


def rate_held(sim: SimulatorProcess) -> tuple[float, float, int]:
    """Requests per minute over the window, the peak one-second rate, violations."""
    sim.reset(rate_limit=RATE_PER_MINUTE // 6, rate_window=10.0)
    api = resource(sim, rate_limit_per_minute=RATE_PER_MINUTE)
    client = api.get_client()
    assert isinstance(client.limiter, RateLimiter)
    sent: list[float] = []
    client.http.event_hooks = {"request": [lambda request: sent.append(time.perf_counter())]}
    try:
        client.get_json("/v2/data", params={"limit": 1})  # token and connection, untimed
        sent.clear()
        started = time.perf_counter()
        while time.perf_counter() - started < WINDOW_SECONDS:
            client.get_json("/v2/data", params={"limit": 1})
    finally:
        api.close()
    in_window = [t for t in sent if started <= t < started + WINDOW_SECONDS]
    achieved = len(in_window) / WINDOW_SECONDS * 60
    # the peak is judged on the limiter's own release times: send times add the thread's
    # wake-up jitter, which the partner's tolerance (and the simulator's) absorbs
    grants = [g for g in client.limiter.grants if g >= started]
    peak = max(sum(1 for u in grants if t <= u < t + 1.0) for t in grants) * 60
    return achieved, peak, len(sim.stats()["violations"])


def main() -> None:
    log = logging.getLogger("bench.rest_client.calls")
    log.setLevel(logging.INFO)  # every call formatted and masked, as in a run
    log.addHandler(logging.NullHandler())
    log.propagate = False
    with SimulatorProcess(config={"clients": {CLIENT_ID: SECRET}}) as sim:
        sim.reset(total_records=PAGES * PAGE_SIZE)
        ours_rates, bare_rates = [], []
        for repetition in range(REPETITIONS):  # alternate who goes first
            if repetition % 2:
                ours_rates.append(ours(sim, log))
                bare_rates.append(bare_httpx(sim))
            else:
                bare_rates.append(bare_httpx(sim))
                ours_rates.append(ours(sim, log))
        achieved, peak, violations = rate_held(sim)
    write(
        "rest_client",
        [
            Comparison(
                name="pages/s vs bare httpx",
                unit="pages/s",
                ours=statistics.median(ours_rates),
                baseline_name="bare httpx",
                baseline=statistics.median(bare_rates),
                goal=0.8,
                extra={
                    "pages_per_repetition": PAGES,
                    "page_size": PAGE_SIZE,
                    "ours_samples": [round(r, 1) for r in ours_rates],
                    "bare_samples": [round(r, 1) for r in bare_rates],
                },
            ),
            Comparison(
                name="rate held",
                unit="req/min",
                ours=achieved,
                baseline_name="limit R",
                baseline=RATE_PER_MINUTE,
                goal=0.95,
                extra={
                    "window_seconds": WINDOW_SECONDS,
                    "peak_rate_any_1s_window_per_min": peak,
                    "never_above_R": peak <= RATE_PER_MINUTE,
                    "simulator_violations": violations,
                },
            ),
        ],
    )
