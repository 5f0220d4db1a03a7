"""RabbitMQ through pika, with publisher confirms and durable declarations.

A channel from this resource is always in confirm mode, and ``publish`` marks messages
persistent and mandatory: a message counts as sent only once the broker has confirmed it,
and one that no queue would take is an error rather than silently dropped. Deployments
give an AMQP URL instead of host and port (``amqps://user:password@host/vhost``, TLS with
the system's trust store, options as pika's URL query parameters); it never appears in
messages, since it holds the password.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
from pydantic import Field

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.health import Health, ServiceUnavailableError, probe
from integration_patterns.resources.rabbitmq_publisher import ConfirmedStreamPublisher

if TYPE_CHECKING:  # pika is imported when a connection opens, not by loading the location
    import pika
    from pika.adapters.blocking_connection import BlockingChannel


class RabbitMQResource(EnvConfigured, dg.ConfigurableResource):
    """Connections and confirmed channels to one RabbitMQ virtual host.

    Example:
        ```python
        rabbitmq = RabbitMQResource.from_env()  # RABBITMQ_* from this process
        with rabbitmq.channel() as ch:
            rabbitmq.declare_queue(ch, "results")
            rabbitmq.publish(ch, exchange="", routing_key="results", body=b"{}", message_id="1")
        ```
    """

    url: str = Field(
        default="",
        repr=False,
        description="amqp:// or amqps:// URL with credentials and virtual host (secret); "
        "when set, host, port, virtual_host, username and password are not used.",
    )
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=5672, description="AMQP port.")
    virtual_host: str = Field(default="/", description="Virtual host.")
    username: str = Field(default="guest", description="User name.")
    password: str = Field(default="", repr=False, description="Password (secret).")
    heartbeat_s: int = Field(default=30, description="AMQP heartbeat interval.")
    socket_timeout_s: float = Field(default=5.0, description="TCP connect/socket timeout.")
    blocked_connection_timeout_s: float = Field(
        default=60.0, description="Fail when the broker blocks publishing (resource alarm)."
    )
    connection_attempts: int = Field(default=1, description="Connection attempts.")
    connection_name: str = Field(
        default="integration_patterns", description="Shown in the broker's connection list."
    )

    env_vars: ClassVar[Mapping[str, str]] = {
        "url": "RABBITMQ_URL",
        "host": "RABBITMQ_HOST",
        "port": "RABBITMQ_PORT",
        "username": "RABBITMQ_USER",
        "password": "RABBITMQ_PASSWORD",
    }

    @property
    def address(self) -> str:
        """host:port (and the URL's virtual host), for messages; never the URL's credentials."""
        if self.url:
            import pika

            params = pika.URLParameters(self.url)
            return f"{params.host}:{params.port} vhost {params.virtual_host}"
        return f"{self.host}:{self.port}"

    def parameters(self) -> "pika.ConnectionParameters | pika.URLParameters":
        """Connection parameters for pika (the password stays in the credentials object)."""
        import pika

        if self.url:
            return self._url_parameters()
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host=self.virtual_host,
            credentials=pika.PlainCredentials(self.username, self.password),
            heartbeat=self.heartbeat_s,
            socket_timeout=self.socket_timeout_s,
            stack_timeout=self.socket_timeout_s * 2,
            blocked_connection_timeout=self.blocked_connection_timeout_s,
            connection_attempts=self.connection_attempts,
            client_properties={"connection_name": self.connection_name},
        )

    def _url_parameters(self) -> "pika.URLParameters":
        """The URL's parameters, with this resource's timeouts where the URL names none."""
        import pika

        params = pika.URLParameters(self.url)
        given = {name for name, _ in parse_qsl(urlsplit(self.url).query)}
        defaults = {
            "heartbeat": self.heartbeat_s,
            "socket_timeout": self.socket_timeout_s,
            "stack_timeout": self.socket_timeout_s * 2,
            "blocked_connection_timeout": self.blocked_connection_timeout_s,
            "connection_attempts": self.connection_attempts,
        }
        for name, value in defaults.items():
            if name not in given:
                setattr(params, name, value)
        params.client_properties = {"connection_name": self.connection_name}
        return params

    @contextmanager
    def connection(self) -> "Iterator[pika.BlockingConnection]":
        """A blocking connection, always closed afterwards."""
        import pika
        from pika.exceptions import AMQPConnectionError

        try:
            conn = pika.BlockingConnection(self.parameters())
        except AMQPConnectionError as exc:
            raise ServiceUnavailableError(
                "RabbitMQ", self.address, repr(exc) or type(exc).__name__
            ) from exc
        try:
            yield conn
        finally:
            if conn.is_open:
                conn.close()

    @contextmanager
    def channel(self) -> "Iterator[BlockingChannel]":
        """A channel in publisher-confirm mode on a fresh connection."""
        with self.connection() as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            yield channel

    @staticmethod
    def declare_queue(
        channel: "BlockingChannel", name: str, *, arguments: dict[str, Any] | None = None
    ) -> int:
        """Declare a durable queue (idempotent) and return its message count."""
        frame = channel.queue_declare(name, durable=True, arguments=arguments)
        return frame.method.message_count

    @staticmethod
    def publish(
        channel: "BlockingChannel",
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish one persistent, mandatory message and wait for the broker's confirm.

        Raises:
            pika.exceptions.UnroutableError: no queue is bound for the routing key.
            pika.exceptions.NackError: the broker refused the message.
        """
        import pika

        channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=message_id,
                content_type="application/json",
                headers=headers,
            ),
            mandatory=True,
        )

    def stream_publisher(
        self, *, window: int = 1000, stall_timeout_s: float = 30.0
    ) -> ConfirmedStreamPublisher:
        """A publisher that keeps ``window`` messages in flight and waits for every confirm."""
        return ConfirmedStreamPublisher(
            self.parameters(), window=window, stall_timeout_s=stall_timeout_s
        )

    def health(self) -> Health:
        """Whether the broker accepts a connection and opens a channel."""

        def check() -> str:
            with self.connection() as conn:
                conn.channel().close()
            return "connection and channel opened"

        return probe("RabbitMQ", self.address, check)
