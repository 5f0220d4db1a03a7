"""A throwaway Dagster instance for tests, demos and benchmarks: webserver and daemon.

Each stack has a temporary DAGSTER_HOME holding a copy of the repository's dagster.yaml
(PostgreSQL storage, queued run coordinator). A daemon dequeues every queued run and ticks
every running sensor of the storage it watches, so a stack that must not touch other
people's work gets a PostgreSQL database of its own (``ensure_database``).

Dagster's CLIs started from a non-interactive shell ignore SIGTERM; the harness starts them
with default signal handlers, each in its own session, so teardown can signal them and then
kill the group (code servers, run workers).
"""

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from devstack import harness
from devstack.dagster_graphql import (
    LOCATION,
    cancel_unfinished_runs,
    location_loaded,
    stop_automation,
)
from devstack.environment import PROJECT, env_defaults

_BIN = Path(sys.executable).parent


def _new_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    return home


def _admin_connection(env: Mapping[str, str]):
    """An autocommit connection to the ``postgres`` database of the Dagster server."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(
        host=env["DAGSTER_PG_HOST"],
        port=env["DAGSTER_PG_PORT"],
        user=env["DAGSTER_PG_USER"],
        password=env["DAGSTER_PG_PASSWORD"],
        dbname="postgres",
    )
    return psycopg.connect(conninfo, autocommit=True)


def ensure_database(name: str, env: Mapping[str, str]) -> bool:
    """Create PostgreSQL database ``name`` for a Dagster instance; True if it was new.

    A stack of its own storage keeps its daemon away from other people's queued runs (and
    theirs away from its runs): a daemon dequeues every queued run of the storage it watches.
    """
    from psycopg import sql

    with _admin_connection(env) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(name: str, env: Mapping[str, str]) -> None:
    """Drop a stack's Dagster database (its sessions are ended first)."""
    from psycopg import sql

    with _admin_connection(env) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


class DagsterDaemon:
    """A ``dagster-daemon run`` on given storage, in a process group of its own.

    A test may SIGKILL it (``kill``) and ``start`` another on the same storage; ``stop``
    ends the current one and whatever every earlier one left behind.
    """

    def __init__(
        self, env: Mapping[str, str], *, home: Path | None = None, workspace: Path | None = None
    ) -> None:
        self._own_home = home is None
        self.home = home or _new_home("dagster_daemon_")
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        self.log = self.home / "daemon.log"
        self.workspace = workspace or PROJECT / "workspace.yaml"
        self.process: harness.Process | None = None
        self._started: list[harness.Process] = []  # killed ones included

    def start(self) -> None:
        """Start the daemon (from its home, so no ``.env`` of the repository overrides)."""
        command = [str(_BIN / "dagster-daemon"), "run", "-w", str(self.workspace)]
        self.process = harness.start(
            "dagster-daemon", command, log=self.log, env=self.env, cwd=self.home
        )
        self._started.append(self.process)

    def set_pool_limit(self, pool: str, limit: int) -> None:
        """``dagster instance concurrency set`` on the daemon's storage (as ``make pools``)."""
        subprocess.run(
            [str(_BIN / "dagster"), "instance", "concurrency", "set", pool, str(limit)],
            cwd=self.home,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def kill(self) -> None:
        """SIGKILL the daemon process alone (its code server and run workers live on)."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> None:
        """Stop the daemon, then everything left in its and earlier daemons' process groups."""
        for process in reversed(self._started):
            process.stop(timeout=20)
        self.process = None
        self._started = []

    def close(self) -> None:
        """Stop it and remove its home (if it made its own)."""
        self.stop()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)


@contextmanager
def dagster_stack(
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    daemon: bool = True,
    automation: bool = True,
    database: str | None = None,
    drop_after: bool = False,
    clear_queue: bool = False,
    timeout: float = 120.0,
    workspace: Path | None = None,
    locations: Sequence[str] = (LOCATION,),
) -> Iterator[str]:
    """Run a Dagster webserver and daemon for this location; yield the webserver's URL.

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
        drop_after: drop ``database`` when the stack stops (a name of the caller's own,
            e.g. with a random suffix, for a stack nobody else may share, even by name).
        clear_queue: cancel the instance's unfinished runs before the daemon starts; only
            with ``database`` (never on storage others use).
        timeout: seconds to wait for the code location to load.
        workspace: a workspace file of other code locations (default: the repository's).
        locations: the code locations to wait for (every one the workspace names).
    """
    if (clear_queue or drop_after) and not database:
        raise ValueError("clear_queue and drop_after need a database of the stack's own")
    port = port or harness.free_port()
    home = _new_home("dagster_home_")
    full_env = {**env_defaults(), **(env or {}), "DAGSTER_HOME": str(home)}
    if database:
        full_env["DAGSTER_PG_DB"] = database
        if ensure_database(database, full_env):
            migrate = [str(_BIN / "dagster"), "instance", "migrate"]
            subprocess.run(migrate, cwd=home, env=full_env, check=True, capture_output=True)
    workspace = workspace or PROJECT / "workspace.yaml"
    url = f"http://{harness.HOST}:{port}"
    webserver = [str(_BIN / "dagster-webserver"), "-w", str(workspace)]
    webserver += ["-h", harness.HOST, "-p", str(port)]
    daemon_process = DagsterDaemon(full_env, home=home, workspace=workspace)
    try:
        with harness.running(
            "dagster-webserver",
            webserver,
            # Dagster's CLI lets a .env in its working directory override the environment
            # (DAGSTER_PG_DB included): it runs from its home, the variables merged already.
            cwd=home,
            env=full_env,
            log=home / "webserver.log",
            ready=lambda: all(location_loaded(url, name) for name in locations),
            timeout=timeout,
            stop_timeout=20,
        ):
            if daemon:
                if not automation:
                    stop_automation(url)
                if clear_queue:
                    cancel_unfinished_runs(url)
                daemon_process.start()
            try:
                yield url
            finally:
                daemon_process.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if database and drop_after:
            drop_database(database, full_env)
