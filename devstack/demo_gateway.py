"""The gateway demo, and the processes it needs: real Dagster and the gateway in front.

``run_demo(gateway_url, secret)`` mints a token, lists the jobs and launches
``platform_smoke`` with ``wait=true``, and returns printable text. ``python -m
devstack.demo_gateway`` uses the Dagster webserver at
``GATEWAY_DAGSTER_URL`` when one answers there (``make dev``), else starts its own
webserver + daemon (temporary DAGSTER_HOME, the repository's dagster.yaml, storage in the
``dagster_gateway_demo`` database), then the gateway on a free port, runs the demo and
stops what it started. The tests and
``bench/gateway.py`` use the same ``dagster_stack`` and ``gateway_server``.

Dagster's CLIs started from a non-interactive shell inherit SIGINT "ignored" and then
ignore SIGTERM too; they are started through a tiny exec wrapper that restores the default
handlers, each in its own session, so teardown can signal them and then kill the group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import jwt

from devstack.env_files import layered_env as env_defaults

PROJECT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DEMO_AUDIENCE = "integration-patterns-gateway"
DEMO_ISSUER = "integration-patterns-dev"
LOCATION = "integration_patterns"
_EXEC_WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


class StackError(RuntimeError):
    """A process of the stack did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A local TCP port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def mint_token(
    secret: str,
    *,
    subject: str = "demo-client",
    scopes: tuple[str, ...] = ("jobs:read", "runs:launch:*"),
    audience: str = DEMO_AUDIENCE,
    issuer: str = DEMO_ISSUER,
    ttl_seconds: int = 300,
) -> str:
    """An HS256 token the gateway accepts when configured with the same secret and claims."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _location_loaded(url: str, location: str = LOCATION) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    query += "locationOrLoadError { __typename } } } } }"
    try:
        body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    entries = body.get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
    for entry in entries:
        if entry["name"] == location and entry["loadStatus"] == "LOADED":
            kind = (entry.get("locationOrLoadError") or {}).get("__typename")
            if kind != "RepositoryLocation":
                raise StackError(f"code location {location} failed to load ({kind})")
            return True
    return False


def ensure_database(name: str, env: Mapping[str, str]) -> bool:
    """Create PostgreSQL database ``name`` for a Dagster instance; True if it was new.

    A stack of its own storage keeps its daemon away from other people's queued runs (and
    theirs away from its runs): a daemon dequeues every queued run of the storage it watches.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(
        host=env["DAGSTER_PG_HOST"],
        port=env["DAGSTER_PG_PORT"],
        user=env["DAGSTER_PG_USER"],
        password=env["DAGSTER_PG_PASSWORD"],
        dbname="postgres",
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def _stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers: code server, daemon, run workers
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


_AUTOMATION_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name }
  sensors { id name sensorState { status } }
  schedules { id name scheduleState { status } } } } } }
"""
_STOP_SENSOR = "mutation S($id: String!) { stopSensor(id: $id) { __typename } }"
_STOP_SCHEDULE = "mutation S($id: String!) { stopRunningSchedule(id: $id) { __typename } }"


def stop_automation(url: str) -> list[str]:
    """Stop every running sensor and schedule of the location in this instance; their names.

    The state is stored in the instance, so a daemon started afterwards never ticks them.
    """
    body = httpx.post(f"{url}/graphql", json={"query": _AUTOMATION_QUERY}, timeout=30).json()
    stopped: list[str] = []
    for repo in body["data"]["repositoriesOrError"]["nodes"]:
        if repo["location"]["name"] != LOCATION:
            continue
        for kind, items, state, mutation in (
            ("sensor", repo["sensors"], "sensorState", _STOP_SENSOR),
            ("schedule", repo["schedules"], "scheduleState", _STOP_SCHEDULE),
        ):
            for item in items:
                if item[state]["status"] == "RUNNING":
                    variables = {"id": item["id"]}
                    httpx.post(
                        f"{url}/graphql",
                        json={"query": mutation, "variables": variables},
                        timeout=30,
                    ).raise_for_status()
                    stopped.append(f"{kind} {item['name']}")
    return stopped


_UNFINISHED = """
{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
  ... on Runs { results { runId } } } }
"""
_TERMINATE = """
mutation T($ids: [String!]!) {
  terminateRuns(runIds: $ids, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) { __typename }
}
"""


def cancel_unfinished_runs(url: str) -> int:
    """Mark every unfinished run of the instance canceled; how many there were.

    For a stack with storage of its own only: runs a previous stack left queued, or
    orphaned when its run workers were killed, would otherwise be dequeued again.
    """
    body = httpx.post(f"{url}/graphql", json={"query": _UNFINISHED}, timeout=30).json()
    ids = [r["runId"] for r in body["data"]["runsOrError"]["results"]]
    if ids:
        payload = {"query": _TERMINATE, "variables": {"ids": ids}}
        httpx.post(f"{url}/graphql", json=payload, timeout=60).raise_for_status()
    return len(ids)


def _start(command: list[str], home: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGNALS, *command],
            # Dagster's CLI lets a .env in its working directory override the environment
            # (DAGSTER_PG_DB included); the variables were merged into env already.
            cwd=home,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def dagster_stack(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    daemon: bool = True,
    automation: bool = True,
    database: str | None = None,
    clear_queue: bool = False,
    timeout: float = 120.0,
    workspace: Path | None = None,
    locations: Sequence[str] = (LOCATION,),
) -> Iterator[str]:
    """Run a Dagster webserver and daemon for this location; yield the webserver's URL.

    The instance is a temporary DAGSTER_HOME holding a copy of the repository's dagster.yaml
    (PostgreSQL storage, queued run coordinator), so the daemon dequeues launched runs.

    Args:
        port: the webserver's port (default: a free one).
        env: variables over the process environment and .env.
        daemon: start ``dagster-daemon run`` too. Without it launched runs stay queued
            (the benchmark cancels them without ever starting a run worker).
        automation: leave sensors and schedules as their defaults say. ``False`` stops them
            in this instance before the daemon starts, so it only dequeues runs (the tests
            must not drain other patterns' inboxes or topics).
        database: keep the instance's storage in this PostgreSQL database (created and
            migrated on first use) instead of ``DAGSTER_PG_DB``: a daemon runs whatever is
            queued in the storage it watches, so a stack of its own neither runs other
            people's runs nor has its runs run (and killed) by their daemons.
        clear_queue: cancel the instance's unfinished runs before the daemon starts; only
            with ``database`` (never on storage others use).
        timeout: seconds to wait for the code location to load.
        workspace: a workspace file of other code locations (default: the repository's).
        locations: the code locations to wait for (every one the workspace names).
    """
    port = port or free_port()
    home = Path(tempfile.mkdtemp(prefix="dagster_home_"))
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    log_path = home / "dagster.log"
    full_env = {**env_defaults(), **(env or {}), "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    if database:
        full_env["DAGSTER_PG_DB"] = database
        if ensure_database(database, full_env):
            migrate = [str(bin_dir / "dagster"), "instance", "migrate"]
            subprocess.run(migrate, cwd=home, env=full_env, check=True, capture_output=True)
    workspace_args = ["-w", str(workspace or PROJECT / "workspace.yaml")]
    url = f"http://{HOST}:{port}"
    processes = [
        _start(
            [str(bin_dir / "dagster-webserver"), *workspace_args, "-h", HOST, "-p", str(port)],
            home,
            full_env,
            log_path,
        )
    ]
    try:
        deadline = time.monotonic() + timeout
        while not all(_location_loaded(url, name) for name in locations):
            if processes[0].poll() is not None:
                raise StackError(
                    f"webserver exited ({processes[0].returncode}):\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"webserver not ready in {timeout}s:\n{_tail(log_path)}")
            time.sleep(0.5)
        if daemon:
            if not automation:
                stop_automation(url)
            if clear_queue:
                if not database:
                    raise ValueError("clear_queue needs a database of the stack's own")
                cancel_unfinished_runs(url)
            daemon_command = [str(bin_dir / "dagster-daemon"), "run", *workspace_args]
            processes.append(_start(daemon_command, home, full_env, log_path))
        yield url
    finally:
        for proc in reversed(processes):
            _stop_group(proc)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def gateway_server(
    dagster_url: str,
    *,
    secret: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serve the gateway with uvicorn in a subprocess pointed at ``dagster_url``.

    The default wait is generous: importing the app takes 15 s and more on a loaded machine.
    """
    port = port or free_port()
    full_env = {
        **env_defaults(),
        "GATEWAY_JWT_SECRET": secret,
        "GATEWAY_JWT_AUDIENCE": DEMO_AUDIENCE,
        "GATEWAY_JWT_ISSUER": DEMO_ISSUER,
        "GATEWAY_DAGSTER_URL": dagster_url,
        **(env or {}),
    }
    log_file = tempfile.NamedTemporaryFile(prefix="gateway_", suffix=".log", delete=False)
    log_path = Path(log_file.name)
    command = [sys.executable, "-m", "integration_patterns.services.gateway", "--port", str(port)]
    proc = subprocess.Popen(
        command, cwd=PROJECT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
    )
    log_file.close()
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise StackError(f"gateway exited ({proc.returncode}):\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise StackError(f"gateway not ready in {timeout}s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_path.unlink(missing_ok=True)


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
        for job in jobs.json()["jobs"]:
            lines.append(f"  {job['name']:<28} {job['description'] or ''}")
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
                for label, value in result["metadata"].items():
                    lines.append(f"    {label:<24} {value}")
            for failure in body["failures"]:
                lines.append(f"  FAILED {failure['step_key']}: {failure['message']}")
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
