"""RabbitMQ from apt, detached, every listener (node, epmd, distribution) on loopback."""

import os
from pathlib import Path

from devstack.harness import port_open, wait_until
from devstack.services.common import HOST, Service, apt_install, log, run

RABBIT_PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
RABBIT_ENV = {
    # RabbitMQ and epmd listen on every interface unless told otherwise.
    "RABBITMQ_NODE_IP_ADDRESS": HOST,
    "RABBITMQ_NODE_PORT": str(RABBIT_PORT),
    "ERL_EPMD_ADDRESS": HOST,
    "RABBITMQ_DIST_PORT": str(RABBIT_PORT + 20000),
    # The inter-node (distribution) listener needs its own setting to stay on loopback.
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
}
RABBIT_LOG_DIR = Path("/var/log/rabbitmq")


def _rabbit_ready() -> bool:
    return (
        port_open(RABBIT_PORT)
        and run(["rabbitmqctl", "-q", "status"], check=False, env=RABBIT_ENV, timeout=30).returncode
        == 0
    )


def rabbitmq_up() -> None:
    """Start rabbitmq-server detached on loopback and wait for the node to boot."""
    apt_install("rabbitmq-server")
    if _rabbit_ready():
        return
    log("starting RabbitMQ")
    run(["rabbitmq-server", "-detached"], env=RABBIT_ENV, check=False)
    logs = sorted(RABBIT_LOG_DIR.glob("rabbit@*.log")) or [RABBIT_LOG_DIR / "rabbit.log"]
    wait_until("rabbitmq", lambda: port_open(RABBIT_PORT), timeout=90, log=logs[-1])
    run(["rabbitmqctl", "await_startup", "--timeout", "60"], env=RABBIT_ENV)


def rabbitmq_vhost(name: str, *, delete: bool = False) -> None:
    """Create (or delete) a virtual host that ``RABBITMQ_USER`` may use fully.

    A vhost is RabbitMQ's namespace: a Celery deployment or test in its own never sees
    another's queues, while the node (and everyone else's vhosts) stays as it is.
    """
    if delete:
        run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, env=RABBIT_ENV, timeout=60)
        return
    user = os.environ.get("RABBITMQ_USER", "guest")
    run(["rabbitmqctl", "-q", "add_vhost", name], check=False, env=RABBIT_ENV, timeout=60)
    run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
        env=RABBIT_ENV,
        timeout=60,
    )


def rabbitmq_down() -> None:
    """Stop the node if it runs."""
    run(["rabbitmqctl", "stop"], check=False, env=RABBIT_ENV, timeout=60)


SERVICE = Service(
    "rabbitmq", RABBIT_PORT, rabbitmq_up, lambda: port_open(RABBIT_PORT), rabbitmq_down
)
