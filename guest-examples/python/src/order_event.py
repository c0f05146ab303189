"""The order event shared by the `orders` and `manual` handlers.

Plain Python, free of WebAssembly bindings, so it can be unit-tested natively.
The payload is a JSON object such as
``{"id": "o1", "item": "book", "quantity": 2, "warehouse": "north"}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# JSON nested deeper than this is not an order. Checked before parsing: inside a component the
# parser would exhaust the Wasm stack (a trap) long before Python's recursion limit.
MAX_DEPTH = 128
_BRACKET_OR_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class MalformedOrder(ValueError):
    """The payload is not an order: redelivering it can never help."""


@dataclass(frozen=True)
class Order:
    id: str
    item: str
    quantity: int
    warehouse: str | None = None

    def summary(self) -> str:
        return f"order {self.id}: {self.quantity} x {self.item}"

    def warehouse_offline(self, attempt: int) -> bool:
        """This example pretends an offline warehouse is back by the third delivery."""
        return self.warehouse == "offline" and attempt < 3

    def warehouse_busy(self, attempt: int) -> bool:
        """A busy warehouse accepts the order on its second delivery."""
        return self.warehouse == "busy" and attempt < 2


def parse_order(payload: bytes | None) -> Order:
    """Parse a payload into an `Order`; raise `MalformedOrder` if it is not one."""
    if payload is None:
        raise MalformedOrder("no payload")
    if _nesting_depth(payload) > MAX_DEPTH:
        raise MalformedOrder(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(payload)
    except ValueError as err:  # bad JSON or bad UTF-8
        raise MalformedOrder(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise MalformedOrder("not a JSON object")
    quantity = _field(data, "quantity", int)
    if isinstance(quantity, bool) or quantity < 0:
        raise MalformedOrder("field 'quantity' must be a non-negative integer")
    return Order(
        id=_field(data, "id", str),
        item=_field(data, "item", str),
        quantity=quantity,
        warehouse=_field(data, "warehouse", str, required=False),
    )


def read_order(payload: bytes | None) -> Order:
    """Parse and validate an order, in the order both handlers check it.

    Raises `MalformedOrder` for anything that is not a valid order, and `RuntimeError` for an
    order of ``"poison"``: the stand-in for a bug, which becomes a trap in the host.
    """
    order = parse_order(payload)
    if order.item == "poison":
        raise RuntimeError(f"order {order.id}: cannot price item 'poison'")
    if order.quantity == 0:
        raise MalformedOrder(f"order {order.id}: quantity must be positive")
    return order


BULK_FROM = 10
"""Orders of at least this many items are ``"bulk"`` (the enrich handler)."""


def enrich_order(payload: bytes | None) -> tuple[str, bytes]:
    """The enrich handler's transformation: the order's id and its JSON object with ``"size"``
    added, as UTF-8 bytes. Raises `MalformedOrder` for anything that is not a valid order
    (``"poison"`` is an item like any other here)."""
    order = parse_order(payload)
    if order.quantity == 0:
        raise MalformedOrder(f"order {order.id}: quantity must be positive")
    data = json.loads(payload or b"")
    data["size"] = "bulk" if order.quantity >= BULK_FROM else "standard"
    return order.id, json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise MalformedOrder(f"missing field '{name}'")
        return None
    if not isinstance(value, kind):
        raise MalformedOrder(f"field '{name}' must be a {kind.__name__}")
    return value


def _nesting_depth(payload: bytes) -> int:
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be too deep: skip the scan
    depth = deepest = 0
    for token in _BRACKET_OR_STRING.finditer(payload):
        match token[0]:
            case b"[" | b"{":
                depth += 1
                deepest = max(deepest, depth)
            case b"]" | b"}":
                depth -= 1
    return deepest
