"""Pagination as small objects, so one client loop serves every partner's style.

A paginator starts from the first request's parameters, reads each page's body (and
response headers) to learn where the next page is (:meth:`Paginator.update_state`) and
rewrites the next request (:meth:`Paginator.next_request`); the client never needs to know
which style it is following. Cursor, next-link in the body, ``Link`` header (RFC 8288,
GitHub style, often with bare-array pages) and page-number styles are provided. The client
itself refuses a page it already fetched, so no paginator can loop forever.
"""

import re
from typing import Any

import httpx

_TARGET = re.compile(r"<([^<>]*)>")
_PARAM = re.compile(
    r"""\s*;\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?"""
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def parse_link_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """The links of a ``Link`` header value (RFC 8288 section 3): target and parameters.

    Lenient, as headers are outside input: text that is not a link is skipped, parameter
    names are lower-cased, quoted values unescaped, and the first of a repeated parameter
    wins (RFC 8288 section 3.3 for ``rel``).
    """
    links: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while (target := _TARGET.search(value, pos)) is not None:
        params: dict[str, str] = {}
        pos = target.end()
        while (param := _PARAM.match(value, pos)) is not None:
            raw = param.group(2) or ""
            if raw.startswith('"'):
                raw = _ESCAPE.sub(r"\1", raw[1:-1])
            params.setdefault(param.group(1).lower(), raw)
            pos = param.end()
        links.append((target.group(1).strip(), params))
    return links


def link_with_rel(values: list[str], rel: str) -> str | None:
    """The target of the first link whose ``rel`` (a space-separated list) includes ``rel``."""
    for value in values:
        for target, params in parse_link_header(value):
            if rel.lower() in params.get("rel", "").lower().split():
                return target
    return None


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

    def update_state(self, body: Any, items: list[Any], response: httpx.Response) -> None:
        """Learn from the page just received (its decoded body, items and response)."""
        raise NotImplementedError

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and parameters of the next page."""
        raise NotImplementedError


class CursorPaginator(Paginator):
    """An opaque cursor in the body (``next_cursor``) sent back as a query parameter."""

    def __init__(self, cursor_path: str = "next_cursor", cursor_param: str = "cursor") -> None:
        self.cursor_path, self.cursor_param = cursor_path, cursor_param
        self._cursor: str | None = None

    def update_state(self, body: Any, items: list[Any], response: httpx.Response) -> None:  # noqa: D102
        self._cursor = dig(body, self.cursor_path)
        self.has_next_page = bool(self._cursor)

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return url, {**params, self.cursor_param: self._cursor}


class NextLinkPaginator(Paginator):
    """A full URL of the next page in the body (``links.next``), followed as is."""

    def __init__(self, next_path: str = "links.next") -> None:
        self.next_path = next_path
        self._next: str | None = None

    def update_state(self, body: Any, items: list[Any], response: httpx.Response) -> None:  # noqa: D102
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

    def update_state(self, body: Any, items: list[Any], response: httpx.Response) -> None:  # noqa: D102
        total = dig(body, self.total_path) if self.total_path else None
        self.has_next_page = bool(items) and (total is None or self.page < int(total))
        self.page += 1

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return url, {**params, self.page_param: self.page}


class LinkHeaderPaginator(Paginator):
    """The next page in the ``Link`` response header (``rel="next"``), as GitHub sends it."""

    def __init__(self, rel: str = "next") -> None:
        self.rel = rel
        self._next: str | None = None

    def update_state(self, body: Any, items: list[Any], response: httpx.Response) -> None:  # noqa: D102
        target = link_with_rel(response.headers.get_list("link"), self.rel)
        # a relative target is resolved against the page's URL (RFC 8288 section 3.1)
        self._next = str(response.request.url.join(target)) if target else None
        self.has_next_page = self._next is not None

    def next_request(self, url: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: D102
        assert self._next is not None
        return self._next, {}  # the link carries every parameter
