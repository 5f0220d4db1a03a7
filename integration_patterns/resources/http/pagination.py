"""Pagination as small objects, so one client loop serves every partner's style.

A paginator starts from the first request's parameters, reads each page's body to learn
where the next page is (:meth:`Paginator.update_state`) and rewrites the next request
(:meth:`Paginator.next_request`); the client never needs to know which style it is
following. Cursor, next-link and page-number styles are provided.
"""

from __future__ import annotations

from typing import Any


def dig(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``path="a.b"``; None where any step is missing."""
    for part in path.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


class Paginator:
    """Where the next page is; subclasses implement one style."""

    has_next_page: bool = True

    def first_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and parameters of the first page."""
        return url, params

    def update_state(self, body: Any, items: list[Any]) -> None:
        """Learn from the page just received."""
        raise NotImplementedError

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and parameters of the next page."""
        raise NotImplementedError


class CursorPaginator(Paginator):
    """An opaque cursor in the body (``next_cursor``) sent back as a query parameter."""

    def __init__(self, cursor_path: str = "next_cursor", cursor_param: str = "cursor") -> None:
        self.cursor_path, self.cursor_param = cursor_path, cursor_param
        self._cursor: str | None = None

    def update_state(self, body: Any, items: list[Any]) -> None:  # noqa: D102
        self._cursor = dig(body, self.cursor_path)
        self.has_next_page = bool(self._cursor)

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return url, {**params, self.cursor_param: self._cursor}


class NextLinkPaginator(Paginator):
    """A full URL of the next page in the body (``links.next``), followed as is."""

    def __init__(self, next_path: str = "links.next") -> None:
        self.next_path = next_path
        self._next: str | None = None

    def update_state(self, body: Any, items: list[Any]) -> None:  # noqa: D102
        self._next = dig(body, self.next_path)
        self.has_next_page = bool(self._next)

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        assert self._next is not None
        return self._next, {}  # the link carries every parameter


class PageNumberPaginator(Paginator):
    """``?page=N`` from ``start``; stops at ``total_pages`` or at the first empty page."""

    def __init__(
        self, page_param: str = "page", total_path: str | None = "total_pages", start: int = 1
    ) -> None:
        self.page_param, self.total_path = page_param, total_path
        self.page = start

    def first_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return url, {**params, self.page_param: self.page}

    def update_state(self, body: Any, items: list[Any]) -> None:  # noqa: D102
        total = dig(body, self.total_path) if self.total_path else None
        self.has_next_page = bool(items) and (total is None or self.page < int(total))
        self.page += 1

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return url, {**params, self.page_param: self.page}
