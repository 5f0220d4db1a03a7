"""The gateway demo: a token, the job list, and ``platform_smoke`` run through the gateway.

``run_demo(gateway_url, secret)`` mints a token, lists the jobs and launches
``platform_smoke`` with ``wait=true``, and returns printable text. ``python -m
devstack.demo_gateway`` uses the Dagster webserver at ``GATEWAY_DAGSTER_URL`` when one
answers there (``make dev``), else starts its own webserver + daemon (``dagster_stack``,
storage in the ``dagster_gateway_demo`` database), then the gateway on a free port
(``gateway_server``), runs the demo and stops what it started.
"""

import sys
import time
import uuid
from contextlib import ExitStack

import httpx

from devstack.dagster_stack import dagster_stack
from devstack.environment import env_defaults
from devstack.gateway_server import gateway_server
from devstack.token import mint_token


def run_demo(gateway_url: str, secret: str) -> str:
    """List the jobs and run ``platform_smoke`` through the gateway; describe the answers."""
    token = mint_token(secret, scopes=("jobs:read", "runs:launch:platform_smoke"))
    headers = {"Authorization": f"Bearer {token}"}
    lines = [
        f"gateway {gateway_url} (token for subject demo-client, scopes jobs:read, "
        "runs:launch:platform_smoke)"
    ]
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=180) as client:
        jobs = client.get("/api/v1/jobs")
        jobs.raise_for_status()
        lines.append(f"GET /api/v1/jobs -> {jobs.status_code}")
        lines.extend(
            f"  {job['name']:<28} {job['description'] or ''}" for job in jobs.json()["jobs"]
        )
        started = time.perf_counter()
        launched = client.post(
            "/api/v1/jobs/platform_smoke/runs",
            params={"wait": "true", "timeout": 150},
            headers={"Idempotency-Key": f"demo-{uuid.uuid4()}"},
            json={"tags": {"demo": "gateway"}},
        )
        elapsed = time.perf_counter() - started
        launched.raise_for_status()
        body = launched.json()
        lines.append(
            f"POST /api/v1/jobs/platform_smoke/runs?wait=true -> {launched.status_code} "
            f"in {elapsed:.1f}s: run {body['run_id']} {body['status']}"
        )
        if launched.status_code == 200:
            lines.append(f"  execution_time {body['execution_time']} s")
            for asset, result in body["results"].items():
                lines.append(f"  {asset}:")
                lines.extend(
                    f"    {label:<24} {value}" for label, value in result["metadata"].items()
                )
            lines.extend(
                f"  FAILED {failure['step_key']}: {failure['message']}"
                for failure in body["failures"]
            )
    return "\n".join(lines)


def run_with_stack() -> str:
    """Run the demo against ``make dev``'s webserver, or a stack of its own, via a gateway."""
    env = env_defaults()
    secret = env.get("GATEWAY_JWT_SECRET") or uuid.uuid4().hex + uuid.uuid4().hex
    existing = env.get("GATEWAY_DAGSTER_URL", "http://127.0.0.1:3000").rstrip("/")
    with ExitStack() as stack:
        try:
            running = httpx.get(f"{existing}/server_info", timeout=2).status_code == 200
        except httpx.HTTPError:
            running = False
        # Against `make dev` the run shows in its UI. Otherwise a stack of its own storage,
        # sensors stopped: its daemon must not run (and, on exit, kill) anybody else's runs.
        own = dagster_stack(database="dagster_gateway_demo", automation=False, clear_queue=True)
        dagster_url = existing if running else stack.enter_context(own)
        url = stack.enter_context(gateway_server(dagster_url, secret=secret))
        return run_demo(url, secret)


def main() -> int:
    """Command line: print the demo's report."""
    sys.stdout.write(run_with_stack() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
