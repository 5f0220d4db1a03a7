"""MongoDB through pymongo, with the pool options set explicitly.

Works without credentials, because the local MongoDB-wire server (mongo-java-server) has no
authentication; a username and password are passed only when configured. Deployments give
a connection string instead (``uri``: authentication, replica set, TLS options, SRV); its
options win over the resource's pool defaults, and it never appears in messages (only its
hosts do), since it may carry a password.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.health import Health, ServiceUnavailableError, probe

if TYPE_CHECKING:  # pymongo is imported when a client is made, not by loading the location
    from pymongo import MongoClient
    from pymongo.database import Database


class MongoResource(EnvConfigured, dg.ConfigurableResource):
    """A pooled MongoDB client.

    Example:
        ```python
        mongo = MongoResource(database="analytics")

        @dg.asset
        def counts(mongo: MongoResource) -> list[dict]:
            return mongo.aggregate("events", [{"$group": {"_id": "$user_id", "n": {"$sum": 1}}}])
        ```
    """

    uri: str = Field(
        default="",
        repr=False,
        description="mongodb:// or mongodb+srv:// connection string (secret: may hold a "
        "password); when set, host, port, username and password are not used.",
    )
    host: str = Field(default="127.0.0.1", description="Server host name or address.")
    port: int = Field(default=27017, description="Server port.")
    database: str = Field(default="integration_patterns", description="Default database.")
    username: str = Field(default="", description="User name; empty for no authentication.")
    password: str = Field(default="", repr=False, description="Password (secret).")
    max_pool_size: int = Field(default=20, description="maxPoolSize: most connections.")
    min_pool_size: int = Field(default=0, description="minPoolSize: connections kept open.")
    max_idle_time_ms: int = Field(default=60_000, description="maxIdleTimeMS per connection.")
    wait_queue_timeout_ms: int = Field(
        default=10_000, description="waitQueueTimeoutMS: wait for a free pooled connection."
    )
    server_selection_timeout_ms: int = Field(
        default=5_000, description="How long to look for a reachable server before failing."
    )
    connect_timeout_ms: int = Field(default=5_000, description="TCP connect timeout.")
    socket_timeout_ms: int = Field(default=60_000, description="Timeout for one operation.")

    env_vars: ClassVar[Mapping[str, str]] = {
        "uri": "MONGO_URI",
        "host": "MONGO_HOST",
        "port": "MONGO_PORT",
        "database": "MONGO_DB",
    }

    _client: "MongoClient | None" = PrivateAttr(default=None)

    @property
    def address(self) -> str:
        """host:port (every host of the connection string), for messages."""
        if self.uri:  # the hosts only: user-info may hold the password
            return urlsplit(self.uri).netloc.rpartition("@")[2]
        return f"{self.host}:{self.port}"

    def pool_settings(self) -> dict[str, Any]:
        """The pool options in force, for run metadata."""
        return {
            "maxPoolSize": self.max_pool_size,
            "minPoolSize": self.min_pool_size,
            "maxIdleTimeMS": self.max_idle_time_ms,
            "waitQueueTimeoutMS": self.wait_queue_timeout_ms,
            "serverSelectionTimeoutMS": self.server_selection_timeout_ms,
        }

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Create the client (pymongo connects lazily, in the background)."""
        self.client()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the client and its pool."""
        self.close()

    def client(self) -> "MongoClient":
        """The shared client, created on first use."""
        from pymongo import MongoClient

        if self._client is None and self.uri:
            given = {name.lower() for name, _ in parse_qsl(urlsplit(self.uri).query)}
            defaults = self.pool_settings() | {
                "connectTimeoutMS": self.connect_timeout_ms,
                "socketTimeoutMS": self.socket_timeout_ms,
                "appname": "integration_patterns",
            }
            self._client = MongoClient(
                self.uri, **{k: v for k, v in defaults.items() if k.lower() not in given}
            )
        if self._client is None:
            credentials: dict[str, Any] = (
                {"username": self.username, "password": self.password} if self.username else {}
            )
            pool: dict[str, Any] = self.pool_settings()
            self._client = MongoClient(
                host=self.host,
                port=self.port,
                directConnection=True,
                connectTimeoutMS=self.connect_timeout_ms,
                socketTimeoutMS=self.socket_timeout_ms,
                appname="integration_patterns",
                **pool,
                **credentials,
            )
        return self._client

    def close(self) -> None:
        """Close the client if it was created."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def db(self, name: str | None = None) -> "Database":
        """A database handle (the configured one by default)."""
        return self.client()[name or self.database]

    def aggregate(
        self, collection: str, pipeline: Sequence[dict[str, Any]], *, database: str | None = None
    ) -> list[dict[str, Any]]:
        """Run an aggregation pipeline with ``allowDiskUse`` and return every document.

        Raises:
            ServiceUnavailableError: no server answered within the selection timeout.
        """
        from pymongo.errors import ConnectionFailure

        try:
            return list(self.db(database)[collection].aggregate(list(pipeline), allowDiskUse=True))
        except ConnectionFailure as exc:
            raise ServiceUnavailableError("MongoDB", self.address, exc) from exc

    def health(self) -> Health:
        """Whether the server answers a ping."""

        def check() -> str:
            from pymongo.errors import ConnectionFailure

            try:
                self.client().admin.command("ping")
            except ConnectionFailure as exc:
                raise ServiceUnavailableError("MongoDB", self.address, exc) from exc
            return "ping ok"

        return probe("MongoDB", self.address, check)
