"""An Ackbar handler for JSON order events that settles every message itself (policy MANUAL).

- a payload that is not an order is rejected with ``acker.reject()``;
- an order for ``"poison"`` raises an uncaught exception: a trap for the host;
- a ``"duplicate"`` item, or a busy warehouse on the first delivery, ends the call from deep
  inside with ``acker.interrupt(...)``;
- an order whose warehouse is offline is nacked until its third delivery;
- any other order is logged and acked.
"""

import wit_world
from wit_world.imports import acker
from wit_world.imports.log import Level, log
from wit_world.imports.types import Decision, Message

from order_event import MalformedOrder, Order, read_order


class WitWorld(wit_world.WitWorld):
    def handle(self, msg: Message) -> Decision | None:
        try:
            order = read_order(msg.payload)
        except MalformedOrder:
            acker.reject()
            return None
        fulfil(order, msg.attempt)
        return None


def fulfil(order: Order, attempt: int) -> None:
    check_stock(order, attempt)
    if order.warehouse_offline(attempt):
        acker.nack()
        return
    log(Level.INFO, order.summary())
    acker.ack()


def check_stock(order: Order, attempt: int) -> None:
    if order.item == "duplicate":
        acker.interrupt(Decision.ACK)  # already processed: settle and stop here; never returns
    if order.warehouse_busy(attempt):
        acker.interrupt(Decision.NACK)  # try again later; never returns
