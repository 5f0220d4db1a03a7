"""How the gateway reaches the Dagster webserver: pooled HTTP, and the official client.

Queries are plain GraphQL POSTs over one pooled ``httpx.Client``. Launches and cancels go
through dagster-graphql's ``DagsterGraphQLClient``, which knows the mutations and their
result types; it is synchronous and its transport refuses to be entered by two threads at
once, so each worker thread gets its own instance. Every call here blocks.
"""

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster_graphql import DagsterGraphQLClient

from integration_patterns.services.gateway.dagster_api.errors import DagsterUnavailableError


class GraphQLTransport:
    """GraphQL requests to one Dagster webserver, failures typed as unavailability."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"not a URL: {url}")
        self._client_args: dict[str, Any] = {
            "hostname": parts.hostname,
            "port_number": parts.port,
            "use_https": parts.scheme == "https",
            "timeout": max(1, int(timeout)),
            "path_prefix": parts.path.rstrip("/"),
        }
        self._local = threading.local()
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._http.close()

    def official_client(self) -> DagsterGraphQLClient:
        """This thread's dagster-graphql client (for launches and cancels)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = DagsterGraphQLClient(**self._client_args)
            self._local.client = client
        return client

    def query(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; any transport, server or GraphQL error raises."""
        try:
            response = self._http.post(
                "/graphql", json={"query": query, "variables": dict(variables or {})}
            )
        except httpx.HTTPError as exc:
            raise DagsterUnavailableError(f"Dagster webserver unreachable: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise DagsterUnavailableError(f"Dagster webserver answered {response.status_code}")
        if body.get("errors") or not isinstance(body.get("data"), dict):
            messages = "; ".join(str(e.get("message", "")) for e in body.get("errors") or [])
            raise DagsterUnavailableError(f"Dagster GraphQL error: {messages or 'no data'}")
        return body["data"]

    def ping(self) -> bool:
        """True when the webserver answers ``/server_info``."""
        try:
            return self._http.get("/server_info").status_code == 200
        except httpx.HTTPError:
            return False
