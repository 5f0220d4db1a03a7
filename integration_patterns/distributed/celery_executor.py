"""Steps on Celery workers (dagster-celery) with the stack's RabbitMQ as broker.

Dagster's own distributed engine, configured once for the run (orchestrating) side and the
worker side alike. Workers share nothing with the run but the broker, the Dagster instance's
PostgreSQL and S3 (asset outputs), so any worker can take any step. Late acknowledgement: a
task is acknowledged when its step has finished, and a worker lost mid-step (killed, out of
memory, machine gone) hands the step back to the broker, which gives it to another worker.

The broker comes from the environment when a run starts or a worker boots, never at import:
``DAGSTER_CELERY_BROKER_URL``, an AMQP URL that holds the broker password. Steps go to
dagster-celery's ``dagster`` queue; deployments (and tests) that share one RabbitMQ keep
apart with a virtual host each (the URL's path), as RabbitMQ intends.
"""

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.execution.retries import RetryMode, get_retries_config

if TYPE_CHECKING:  # imported when a run starts, not by loading the location
    from dagster_celery.executor import CeleryExecutor

BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
# The result of a step travels back to the run over the broker (RabbitMQ's RPC replies).
RESULT_BACKEND = "rpc://"


def celery_settings() -> dict[str, Any]:
    """Celery settings shared by the run and the workers (both sides must agree)."""
    return {
        # Acknowledge after the step, and give the task back if the worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A worker reserves one step at a time, so a lost worker strands at most one.
        "worker_prefetch_multiplier": 1,
        # No AMQP heartbeats: a solo worker runs its step on the thread that would send them,
        # so RabbitMQ (60 s) dropped a worker in a long step and gave the step to another
        # worker while the first still ran it: the large preset's 90 s Mongo read ran twice
        # (celery/celery#3430). A dead worker process still closes its socket, and the
        # broker requeues its step at once; a vanished host is found by TCP keepalive.
        "broker_heartbeat": 0,
        "broker_connection_retry_on_startup": True,
    }


def broker_url(env: dict[str, str] | None = None) -> str:
    """The broker URL from the environment; a clear error when it is missing."""
    env = dict(os.environ) if env is None else env
    url = env.get(BROKER_ENV)
    if not url:
        raise dg.DagsterInvalidConfigError(
            f"{BROKER_ENV} is not set: the Celery executor needs the AMQP URL of its broker",
            [],
            None,
        )
    return url


def make_executor(retries: RetryMode) -> "CeleryExecutor":
    """dagster-celery's executor with this project's settings, from the environment."""
    from dagster_celery.executor import CeleryExecutor

    return CeleryExecutor(
        retries=retries,
        broker=broker_url(),
        backend=RESULT_BACKEND,
        config_source=celery_settings(),
    )


@dg.executor(
    name="celery_on_rabbitmq",
    config_schema={"retries": get_retries_config()},
    requirements=dg.multiple_process_executor_requirements(),
)
def celery_on_rabbitmq(init_context: dg.InitExecutorContext) -> "CeleryExecutor":
    """dagster-celery on the stack's RabbitMQ, late-acknowledging; see the module docstring."""
    retries = RetryMode.from_config(init_context.executor_config["retries"])  # type: ignore[arg-type]
    return make_executor(retries or RetryMode.ENABLED)
