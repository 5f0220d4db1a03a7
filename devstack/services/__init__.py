"""Local services manager: install, start, check and stop the real services on 127.0.0.1.

Usage: ``python -m devstack.services up|status|down [service ...]``.

Every step is idempotent: what is installed is reused, what already answers is left alone.
PostgreSQL 15 and RabbitMQ come from apt; Kafka (KRaft, one node) and the MongoDB-wire server
(mongo-java-server, H2 file) run from Maven Central jars with Java 17; the S3 gateway
(versitygw) is built once with ``go install`` from the Go module proxy. Downloads and data live
in ``DEVSTACK_HOME`` (default ``<project>/.devstack``, git-ignored). When a service does not
come up, the command fails naming it and showing the tail of its log.

One module per service (``postgres``, ``rabbitmq``, ``kafka``, ``mongo``, ``partner_api``,
``s3``), what they share in ``common``, the command line in ``cli``. Stdlib only at import, so
it runs before the project's Python dependencies are installed (creating the S3 bucket imports
boto3, which ``uv run`` provides).
"""

from devstack.services.common import maven_libs, pid_alive
from devstack.services.rabbitmq import rabbitmq_vhost

__all__ = ["maven_libs", "pid_alive", "rabbitmq_vhost"]
