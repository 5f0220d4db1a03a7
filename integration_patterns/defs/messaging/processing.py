"""Turn one order message into a result, or into a failure with its reason.

Processing never raises for bad input: a poison message becomes a failure that is
dead-lettered with its reason, and the rest of the range goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

ORDER_TYPE = "order.created"


@dataclass(frozen=True)
class Outcome:
    """A processed order (``result``) or the reason it could not be processed."""

    result: dict[str, Any] | None = None
    error: str = ""


def _money(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{field} is not a number: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{field} must be a non-negative number: {value!r}")
    return amount


def process_order(payload: bytes | None) -> Outcome:
    """Validate an ``order.created`` event and compute its total."""
    if not payload:
        return Outcome(error="empty payload")
    try:
        order = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Outcome(error=f"unparsable payload: {exc}")
    if not isinstance(order, dict):
        return Outcome(error=f"payload is a JSON {type(order).__name__}, not an object")
    if order.get("type") != ORDER_TYPE:
        return Outcome(error=f"unknown message type: {order.get('type')!r}")
    missing = [f for f in ("order_id", "customer_id", "items", "currency") if f not in order]
    if missing:
        return Outcome(error=f"missing field(s): {', '.join(missing)}")
    items = order["items"]
    if not isinstance(items, list) or not items:
        return Outcome(error="items must be a non-empty list")
    try:
        total = Decimal(0)
        for item in items:
            quantity = item["quantity"]
            # Exactly an integer: int() would turn 2.7 into 2 and True into 1 silently.
            if type(quantity) is not int or quantity <= 0:
                raise ValueError(f"quantity must be a positive integer: {quantity!r}")
            total += quantity * _money(item["unit_price"], "unit_price")
    except (KeyError, TypeError, ValueError) as exc:
        return Outcome(error=f"invalid item: {exc}")
    return Outcome(
        result={
            "order_id": str(order["order_id"]),
            "customer_id": order["customer_id"],
            "currency": str(order["currency"]),
            "item_count": len(items),
            "total": str(total),
        }
    )
