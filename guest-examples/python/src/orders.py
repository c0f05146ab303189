"""An Ackbar handler for JSON order events that leaves the decision to the ack policy.

- a valid order is logged and returned as ``None``: the policy decides;
- a payload that is not an order is rejected explicitly (``Decision.REJECT``);
- an order whose warehouse is offline raises ``Retry`` until its third delivery;
- an order for ``"poison"`` raises an uncaught exception: a trap for the host.
"""

from ackbar_guest import Decision, Level, Message, Retry, export, log

from order_event import MalformedOrder, read_order


class Orders:
    def handle(self, msg: Message) -> Decision | None:
        try:
            order = read_order(msg.payload)
        except MalformedOrder as err:
            log(Level.WARN, f"rejecting malformed order: {err}")
            return Decision.REJECT
        if order.warehouse_offline(msg.attempt):
            raise Retry(f"warehouse offline (attempt {msg.attempt})")
        log(Level.INFO, order.summary())
        return None


WitWorld = export(Orders)
