"""What a call to the Dagster webserver can fail with, typed for the gateway's statuses.

The app maps each to an HTTP status without parsing messages. No message includes run
config (it may carry credentials): dagster-graphql's own messages quote the variables, so
the client drops them.
"""

from typing import Any


class DagsterError(Exception):
    """Base of everything the gateway's Dagster client raises."""


class DagsterUnavailableError(DagsterError):
    """The webserver did not answer, or answered with a server error."""


class JobNotFoundError(DagsterError):
    """No such job in the gateway's code location."""


class RunNotFoundError(DagsterError):
    """No such run (or it belongs to another code location)."""


class BackfillNotFoundError(DagsterError):
    """No such backfill (or it belongs to another code location)."""


class RunConfigInvalidError(DagsterError):
    """Dagster rejected the run config; ``errors`` are its messages with path and reason."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors) or "invalid run config")
        self.errors = errors


class LaunchRejectedError(DagsterError):
    """Dagster refused the launch for another reason (``kind`` is its result type)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CancelRejectedError(DagsterError):
    """The run cannot be cancelled (typically: it already finished)."""
