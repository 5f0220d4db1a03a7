"""A Dagster stack that processes one private webhook inbox, for tests and the benchmark.

A webserver and a ``dagster-daemon`` on Dagster storage of their own (a daemon dequeues
every run and ticks every running sensor of the storage it watches), with every sensor and
schedule stopped except the webhook routing sensor, and the code location pointed at a
private inbox schema. The daemon is a process of its own so a test can SIGKILL it and
start another one on the same storage.
"""

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from devstack.dagster_graphql import start_sensor, stop_automation
from devstack.dagster_stack import DagsterDaemon, dagster_stack, drop_database
from devstack.environment import env_defaults

SENSOR = "webhook_inbox_router"


@contextmanager
def webhook_stack(
    schema: str, *, env: Mapping[str, str] | None = None, timeout: float = 180.0
) -> Iterator[tuple[str, DagsterDaemon]]:
    """Webserver + daemon processing the inbox in ``schema``; yields (webserver URL, daemon).

    The Dagster database is created for the stack and dropped afterwards.
    """
    database = f"dagster_wh_{uuid.uuid4().hex[:10]}"
    stack_env = {"WEBHOOK_INBOX_SCHEMA": schema, **(env or {})}
    full_env = {**env_defaults(), **stack_env, "DAGSTER_PG_DB": database}
    daemon = DagsterDaemon(full_env)
    try:
        with dagster_stack(env=stack_env, database=database, daemon=False, timeout=timeout) as url:
            stop_automation(url)
            start_sensor(url, SENSOR)
            daemon.set_pool_limit("postgres", 4)  # as `make pools` does for `make dev`
            daemon.start()
            try:
                yield url, daemon
            finally:
                daemon.close()
    finally:
        drop_database(database, full_env)
