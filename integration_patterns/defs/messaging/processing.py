"""Turn one order message into a result, or into a failure with its reason.

Processing never raises, whatever the bytes: a poison message becomes a failure that is
dead-lettered with its reason, and the rest of the range goes on. A range run that raised
on content would fail on every re-execution and stall its partition for good, so the last
line of defence catches everything and keeps the original exception's type.

Reasons are bounded (``MAX_REASON_CHARS``) and quote untrusted values through ``reprlib``,
so a failure always fits a message header whatever the size or depth of the input.
"""

import json
import reprlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

ORDER_TYPE = "order.created"
MAX_REASON_CHARS = 500
MAX_ID_CHARS = 128
MAX_QUANTITY = 1_000_000
MAX_UNIT_PRICE = Decimal(10) ** 12


def _quoter() -> reprlib.Repr:
    quoter = reprlib.Repr()
    quoter.maxstring = quoter.maxother = 60
    quoter.maxlevel, quoter.maxlist, quoter.maxdict = 2, 4, 4
    return quoter


_quote = _quoter().repr


@dataclass(frozen=True)
class Outcome:
    """A processed order (``result``) or why it could not be processed.

    ``error_type`` names the original exception (``JSONDecodeError``, ``InvalidOrderError``,
    or whatever an unexpected failure raised), so a dead letter says whether the input or
    the code was at fault.
    """

    result: dict[str, Any] | None = None
    error: str = ""
    error_type: str = ""


class InvalidOrderError(ValueError):
    """The message is not a valid ``order.created`` event."""


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def _money(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidOrderError(f"{field} is not a number: {_quote(value)}")
    try:
        amount = Decimal(str(value)) if len(str(value)) <= 64 else Decimal("NaN")
    except InvalidOperation as exc:
        raise InvalidOrderError(f"{field} is not a number: {_quote(value)}") from exc
    if not amount.is_finite() or amount < 0 or amount > MAX_UNIT_PRICE:
        raise InvalidOrderError(
            f"{field} must be a non-negative number up to {MAX_UNIT_PRICE}: {_quote(value)}"
        )
    return amount


def _identifier(order: dict[str, Any], field: str) -> str | int:
    """An id is a non-empty string of at most MAX_ID_CHARS, or an integer (not a bool)."""
    value = order[field]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return value
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
        return value
    raise InvalidOrderError(
        f"{field} must be a string of 1-{MAX_ID_CHARS} chars or a 64-bit integer: {_quote(value)}"
    )


def _validate(payload: bytes | None) -> dict[str, Any]:
    if not payload:
        raise InvalidOrderError("empty payload")
    try:
        order = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, >4300-digit ints, nesting
        raise InvalidOrderError(f"unparsable payload: {type(exc).__name__}: {exc}") from exc
    if not isinstance(order, dict):
        raise InvalidOrderError(f"payload is a JSON {type(order).__name__}, not an object")
    if order.get("type") != ORDER_TYPE:
        raise InvalidOrderError(f"unknown message type: {_quote(order.get('type'))}")
    missing = [f for f in ("order_id", "customer_id", "items", "currency") if f not in order]
    if missing:
        raise InvalidOrderError(f"missing field(s): {', '.join(missing)}")
    order_id = _identifier(order, "order_id")
    customer_id = _identifier(order, "customer_id")
    currency = order["currency"]
    if not isinstance(currency, str) or not 0 < len(currency) <= 8:
        raise InvalidOrderError(f"currency must be a short code: {_quote(currency)}")
    items = order["items"]
    if not isinstance(items, list) or not items:
        raise InvalidOrderError("items must be a non-empty list")
    total = Decimal(0)
    for item in items:
        if not isinstance(item, dict) or "quantity" not in item or "unit_price" not in item:
            raise InvalidOrderError(f"invalid item: needs quantity and unit_price: {_quote(item)}")
        quantity = item["quantity"]
        # Exactly an integer: int() would turn 2.7 into 2 and True into 1 silently.
        if type(quantity) is not int or not 0 < quantity <= MAX_QUANTITY:
            raise InvalidOrderError(
                f"invalid item: quantity must be a positive integer up to {MAX_QUANTITY}: "
                f"{_quote(quantity)}"
            )
        total += quantity * _money(item["unit_price"], "unit_price")
    return {
        "order_id": str(order_id),
        "customer_id": customer_id,
        "currency": currency,
        "item_count": len(items),
        "total": str(total),
    }


def process_order(payload: bytes | None) -> Outcome:
    """Validate an ``order.created`` event and compute its total; never raises."""
    try:
        return Outcome(result=_validate(payload))
    except InvalidOrderError as exc:
        original = exc.__cause__ or exc
        return Outcome(error=_clip(str(exc)), error_type=type(original).__name__)
    except Exception as exc:  # content must never fail a run: dead-letter it, keep the type
        return Outcome(
            error=_clip(f"unexpected {type(exc).__name__}: {_quote(str(exc))}"),
            error_type=_clip(type(exc).__qualname__, 100),
        )
