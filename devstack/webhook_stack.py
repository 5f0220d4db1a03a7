"""A Dagster stack that processes one private webhook inbox, for tests and the benchmark.

A webserver and a ``dagster-daemon`` on Dagster storage of their own (a daemon dequeues
every run and ticks every running sensor of the storage it watches), with every sensor and
schedule stopped except the webhook routing sensor, and the code location pointed at a
private inbox schema. The daemon is a process of its own so a test can SIGKILL it and
start another one on the same storage.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devstack.demo_gateway import (
    LOCATION,
    PROJECT,
    dagster_stack,
    env_defaults,
    stop_automation,
)

SENSOR = "webhook_inbox_router"

_START_SENSOR = """
mutation S($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) { __typename ... on PythonError { message } }
}
"""
_RUNS = """
{ runsOrError { ... on Runs { results {
    runId jobName status runConfigYaml tags { key value } startTime endTime
} } } }
"""


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One GraphQL request to the webserver; its ``data``."""
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


def start_sensor(url: str, name: str = SENSOR) -> None:
    """Start one sensor of the location in the stack's instance."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": name,
    }
    answer = graphql(url, _START_SENSOR, {"selector": selector})["startSensor"]
    if answer["__typename"] != "Sensor":
        raise RuntimeError(f"could not start sensor {name}: {answer}")


def runs(url: str) -> list[dict[str, Any]]:
    """Every run of the stack's instance, newest first."""
    return graphql(url, _RUNS)["runsOrError"]["results"]


class Daemon:
    """A ``dagster-daemon run`` on given storage, in a process group of its own."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="dagster_daemon_"))
        shutil.copy(PROJECT / "dagster.yaml", self.home / "dagster.yaml")
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        self.log = self.home / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._groups: list[int] = []  # every daemon's process group, killed ones included

    def start(self) -> None:
        """Start the daemon (from its home, so no ``.env`` of the repository overrides)."""
        daemon = str(Path(sys.executable).parent / "dagster-daemon")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [daemon, "run", "-w", str(PROJECT / "workspace.yaml")],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._groups.append(self.process.pid)

    def set_pool_limit(self, pool: str, limit: int) -> None:
        """``dagster instance concurrency set`` on the daemon's storage (as ``make pools``)."""
        dagster = str(Path(sys.executable).parent / "dagster")
        subprocess.run(
            [dagster, "instance", "concurrency", "set", pool, str(limit)],
            cwd=self.home,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def kill(self) -> None:
        """SIGKILL the daemon process alone (its code server and run workers live on)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the daemon, then everything left in its and earlier daemons' process groups."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for group in self._groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=10)
        self.process = None
        self._groups = []

    def close(self) -> None:
        """Stop it and remove its home."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def drop_database(name: str, env: Mapping[str, str]) -> None:
    """Drop a stack's Dagster database (its sessions are ended first)."""
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
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def webhook_stack(
    schema: str, *, env: Mapping[str, str] | None = None, timeout: float = 180.0
) -> Iterator[tuple[str, Daemon]]:
    """Webserver + daemon processing the inbox in ``schema``; yields (webserver URL, daemon).

    The Dagster database is created for the stack and dropped afterwards.
    """
    database = f"dagster_wh_{uuid.uuid4().hex[:10]}"
    stack_env = {"WEBHOOK_INBOX_SCHEMA": schema, **(env or {})}
    full_env = {**env_defaults(), **stack_env, "DAGSTER_PG_DB": database}
    daemon = Daemon(full_env)
    try:
        with dagster_stack(env=stack_env, database=database, daemon=False, timeout=timeout) as url:
            stop_automation(url)
            start_sensor(url)
            daemon.set_pool_limit("postgres", 4)  # as `make pools` does for `make dev`
            daemon.start()
            try:
                yield url, daemon
            finally:
                daemon.close()
    finally:
        drop_database(database, full_env)
