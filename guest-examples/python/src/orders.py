"""An Ackbar handler for JSON order events that leaves the decision to the ack policy.

- a valid order is logged and returned as ``None``: the policy decides;
- a payload that is not an order is rejected explicitly (``Decision.REJECT``);
- an order whose warehouse is offline raises a ``retry`` error until its third delivery;
- an order for ``"poison"`` raises an uncaught exception: a trap for the host.
"""

from componentize_py_types import Err

import wit_world
from wit_world.imports.log import Level, log
from wit_world.imports.types import Decision, HandlerError_Retry, Message

from order_event import MalformedOrder, read_order


class WitWorld(wit_world.WitWorld):
    def handle(self, msg: Message) -> Decision | None:
        try:
            order = read_order(msg.payload)
        except MalformedOrder as err:
            log(Level.WARN, f"rejecting malformed order: {err}")
            return Decision.REJECT
        if order.warehouse_offline(msg.attempt):
            raise Err(HandlerError_Retry(f"warehouse offline (attempt {msg.attempt})"))
        log(Level.INFO, order.summary())
        return None
