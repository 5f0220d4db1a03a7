"""Processors: what each route extracts from an event, and the table it keeps current.

A processor is data: its entity table, key and typed columns (from which the table's DDL
and the set-based upsert are derived), and a ``parse`` function that turns one event's
payload into one row or raises ``MalformedEventError`` with a reason. Parsers accept the
providers' real payload shapes (Stripe's ``data.object``, GitHub's ``repository`` and
``pull_request``/``issue``) and the pattern's first specification (``data.order`` with
``id``, ``customer_id``, ``total``, ``items``; flat ``data`` for the others), and check the
shape they need: an event routed here by an unsigned header it does not match fails alone.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

# Stripe amounts are integers in the currency's minor unit, except for these currencies.
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_MAX_AMOUNT = Decimal("1e16")
MAX_REASON = 300


class MalformedEventError(ValueError):
    """The payload lacks what its processor needs; the event is marked failed with this."""


Row = dict[str, Any]


@dataclass(frozen=True)
class Processor:
    """One route's processor: entity table, key, typed columns and payload parser."""

    name: str
    table: str
    key: tuple[str, ...]
    columns: Mapping[str, str]  # column -> PostgreSQL type, key columns included
    parse: Callable[[str, Mapping[str, Any]], Row]  # (event type, payload) -> row
    description: str


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedEventError(f"payload has no {what} object")
    return value


def _id(entity: Mapping[str, Any], *names: str, what: str = "") -> str:
    for name in names:
        value = entity.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    raise MalformedEventError(f"payload has no {what}{' or '.join(names)}")


def _number(entity: Mapping[str, Any], what: str) -> int:
    value = entity.get("number")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise MalformedEventError(f"payload has no valid {what} number")
    return value


def _text(entity: Mapping[str, Any], name: str) -> str | None:
    value = entity.get(name)
    return None if value is None else str(value)


def _decimal(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedEventError(f"{what} is not a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MalformedEventError(f"{what} is not a number") from None
    if not amount.is_finite() or abs(amount) >= _MAX_AMOUNT:
        raise MalformedEventError(f"{what} is out of range")
    return amount


def _minor_units(value: Any, currency: str | None, what: str) -> Decimal | None:
    amount = _decimal(value, what)
    if amount is None or (currency or "").lower() in _ZERO_DECIMAL:
        return amount
    return amount / 100


def _stripe_object(payload: Mapping[str, Any], kinds: tuple[str, ...]) -> Mapping[str, Any] | None:
    """Stripe's ``data.object`` if the payload is a Stripe event; its kind must be one of ours."""
    data = payload.get("data")
    if not isinstance(data, Mapping) or "object" not in data:
        return None
    obj = _obj(data["object"], "data.object")
    kind = obj.get("object")
    if kind not in kinds:
        raise MalformedEventError(f"data.object is a {kind!r}, expected one of {', '.join(kinds)}")
    return obj


def _spec_entity(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The first specification's entity: ``data.<name>`` if present, else ``data``."""
    data = _obj(payload.get("data"), "data")
    inner = data.get(name)
    return _obj(inner, f"data.{name}") if inner is not None else data


def parse_order(event_type: str, payload: Mapping[str, Any]) -> Row:
    """``order.created``: ``data.order`` {id, customer_id, total, items} or flat ``data``."""
    entity = _spec_entity(payload, "order")
    items = entity.get("items")
    if items is not None and not isinstance(items, list):
        raise MalformedEventError("order items is not a list")
    return {
        "order_id": _id(entity, "order_id", "id", what="order "),
        "customer_id": _text(entity, "customer_id"),
        "amount": _decimal(entity.get("total", entity.get("amount")), "order total"),
        "currency": _text(entity, "currency"),
        "status": _text(entity, "status") or "created",
        "items": items,
    }


def parse_payment(event_type: str, payload: Mapping[str, Any]) -> Row:
    """Stripe payment intents, refunded charges and paid invoices, or ``payment.received``."""
    obj = _stripe_object(payload, ("payment_intent", "charge", "invoice"))
    if obj is None:
        entity = _spec_entity(payload, "payment")
        return {
            "payment_id": _id(entity, "payment_id", "id", what="payment "),
            "order_id": _text(entity, "order_id"),
            "amount": _decimal(entity.get("amount"), "payment amount"),
            "currency": _text(entity, "currency"),
            "status": _text(entity, "status") or "received",
        }
    currency = _text(obj, "currency")
    given = obj.get("metadata")
    metadata: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    kind = obj["object"]
    if kind == "charge":  # a refund updates the payment the charge belongs to
        return {
            "payment_id": _id(obj, "payment_intent", "id", what="charge "),
            "order_id": _text(metadata, "order_id"),
            "amount": _minor_units(obj.get("amount"), currency, "charge amount"),
            "currency": currency,
            "status": "refunded" if obj.get("refunded") else "partially_refunded",
        }
    amount = obj.get("amount_paid") if kind == "invoice" else obj.get("amount")
    return {
        "payment_id": _id(obj, "id", what=f"{kind} "),
        "order_id": _text(metadata, "order_id"),
        "amount": _minor_units(amount, currency, f"{kind} amount"),
        "currency": currency,
        "status": _text(obj, "status"),
    }


def parse_user(event_type: str, payload: Mapping[str, Any]) -> Row:
    """Stripe customers, or ``user.updated`` (``data.user`` or flat ``data``)."""
    obj = _stripe_object(payload, ("customer",))
    entity = obj if obj is not None else _spec_entity(payload, "user")
    return {
        "user_id": _id(entity, "user_id", "id", what="user "),
        "email": _text(entity, "email"),
        "name": _text(entity, "name"),
        "attributes": dict(entity),
    }


def _repository(payload: Mapping[str, Any]) -> str:
    return _id(_obj(payload.get("repository"), "repository"), "full_name", what="repository ")


def _login(value: Any) -> str | None:
    return _text(value, "login") if isinstance(value, Mapping) else None


def parse_push(event_type: str, payload: Mapping[str, Any]) -> Row:
    """GitHub ``push``: the branch's new head."""
    commits = payload.get("commits")
    pusher = payload.get("pusher")
    return {
        "repository": _repository(payload),
        "ref": _id(payload, "ref", what="push "),
        "head_sha": _id(payload, "after", what="push "),
        "pusher": _text(pusher, "name") if isinstance(pusher, Mapping) else None,
        "commit_count": len(commits) if isinstance(commits, list) else 0,
        "forced": bool(payload.get("forced")),
    }


def parse_pull_request(event_type: str, payload: Mapping[str, Any]) -> Row:
    """GitHub ``pull_request``: the pull request's latest state."""
    pr = _obj(payload.get("pull_request"), "pull_request")
    head = pr.get("head")
    return {
        "repository": _repository(payload),
        "number": _number(pr, "pull_request"),
        "action": _text(payload, "action"),
        "title": _text(pr, "title"),
        "state": _text(pr, "state"),
        "merged": bool(pr.get("merged")),
        "head_sha": _text(head, "sha") if isinstance(head, Mapping) else None,
        "author": _login(pr.get("user")),
    }


def parse_issue(event_type: str, payload: Mapping[str, Any]) -> Row:
    """GitHub ``issues``: the issue's latest state."""
    issue = _obj(payload.get("issue"), "issue")
    return {
        "repository": _repository(payload),
        "number": _number(issue, "issue"),
        "action": _text(payload, "action"),
        "title": _text(issue, "title"),
        "state": _text(issue, "state"),
        "author": _login(issue.get("user")),
    }


PROCESSORS: dict[str, Processor] = {
    p.name: p
    for p in (
        Processor(
            "orders",
            "webhook_orders",
            ("order_id",),
            {
                "order_id": "text",
                "customer_id": "text",
                "amount": "numeric(18, 2)",
                "currency": "text",
                "status": "text",
                "items": "jsonb",
            },
            parse_order,
            "Orders from order events, latest state per order.",
        ),
        Processor(
            "payments",
            "webhook_payments",
            ("payment_id",),
            {
                "payment_id": "text",
                "order_id": "text",
                "amount": "numeric(18, 2)",
                "currency": "text",
                "status": "text",
            },
            parse_payment,
            "Payments (payment.received, Stripe payment intents, refunds, paid invoices).",
        ),
        Processor(
            "users",
            "webhook_users",
            ("user_id",),
            {"user_id": "text", "email": "text", "name": "text", "attributes": "jsonb"},
            parse_user,
            "Users and Stripe customers, latest state per user.",
        ),
        Processor(
            "github_pushes",
            "webhook_github_pushes",
            ("repository", "ref"),
            {
                "repository": "text",
                "ref": "text",
                "head_sha": "text",
                "pusher": "text",
                "commit_count": "integer",
                "forced": "boolean",
            },
            parse_push,
            "Head of every pushed branch, from GitHub push events.",
        ),
        Processor(
            "github_pull_requests",
            "webhook_github_pull_requests",
            ("repository", "number"),
            {
                "repository": "text",
                "number": "bigint",
                "action": "text",
                "title": "text",
                "state": "text",
                "merged": "boolean",
                "head_sha": "text",
                "author": "text",
            },
            parse_pull_request,
            "Pull requests' latest state, from GitHub pull_request events.",
        ),
        Processor(
            "github_issues",
            "webhook_github_issues",
            ("repository", "number"),
            {
                "repository": "text",
                "number": "bigint",
                "action": "text",
                "title": "text",
                "state": "text",
                "author": "text",
            },
            parse_issue,
            "Issues' latest state, from GitHub issues events.",
        ),
    )
}


def reason_of(exc: Exception) -> str:
    """A bounded, single-line reason to store with a failed event."""
    text = f"{exc}" if isinstance(exc, MalformedEventError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:MAX_REASON]
