"""Does a GitHub delivery's body have the shape of the event its unsigned header names?

GitHub signs only the body: ``X-GitHub-Event`` can be changed by anyone replaying a
captured delivery, and the event type decides which processor gets the payload. For the
events a processor may be routed (and ``ping``), the body must carry the top-level keys
GitHub sends with that event and none of the keys that mark a sibling event sharing its
objects (an ``issue_comment`` carries ``issue`` too, a ``pull_request_review`` carries
``pull_request``). Other event names are stored as named: no processor of a shipped route
expects their payload, so they fall to the default route.

Keys are from GitHub's "Webhook events and payloads" reference.
"""

from collections.abc import Mapping
from typing import Any

# event: (keys the body must have, keys it must not have)
SHAPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "push": (frozenset({"ref", "before", "after", "commits", "pusher"}), frozenset()),
    "pull_request": (
        frozenset({"action", "number", "pull_request"}),
        frozenset({"review", "comment", "thread"}),
    ),
    "issues": (frozenset({"action", "issue"}), frozenset({"comment", "pull_request"})),
    "issue_comment": (frozenset({"action", "issue", "comment"}), frozenset()),
    "ping": (frozenset({"zen", "hook_id"}), frozenset()),
}


class EventShapeError(ValueError):
    """The body is not the event the header names (the message is safe to send back)."""


def check_event_shape(event: str, payload: Mapping[str, Any]) -> None:
    """Raise ``EventShapeError`` when a known ``event``'s body lacks its shape."""
    shape = SHAPES.get(event)
    if shape is None:
        return
    required, forbidden = shape
    if not required <= payload.keys() or forbidden & payload.keys():
        raise EventShapeError(f"X-GitHub-Event {event!r} does not match the payload")
