"""An Ackbar handler for JSON order events that settles every message itself (policy MANUAL).

- a payload that is not an order is rejected with ``reject()``;
- an order for ``"poison"`` raises an uncaught exception: a trap for the host;
- a ``"duplicate"`` item, or a busy warehouse on the first delivery, ends the call from deep
  inside with ``interrupt(...)``;
- an order whose warehouse is offline is nacked until its third delivery;
- any other order is logged and acked.

The handler is a plain function: `export` takes a function as well as a class.
"""

from ackbar_guest import Decision, Level, Message, ack, export, interrupt, log, nack, reject

from order_event import MalformedOrder, Order, read_order


def handle(msg: Message) -> None:
    try:
        order = read_order(msg.payload)
    except MalformedOrder:
        reject()
        return
    fulfil(order, msg.attempt)


def fulfil(order: Order, attempt: int) -> None:
    check_stock(order, attempt)
    if order.warehouse_offline(attempt):
        nack()
        return
    log(Level.INFO, order.summary())
    ack()


def check_stock(order: Order, attempt: int) -> None:
    if order.item == "duplicate":
        interrupt(Decision.ACK)  # already processed: settle and stop here; never returns
    if order.warehouse_busy(attempt):
        interrupt(Decision.NACK)  # try again later; never returns


WitWorld = export(handle)
