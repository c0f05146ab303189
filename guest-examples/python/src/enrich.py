"""An Ackbar handler that produces.

- each valid order is forwarded, keyed by its id and with an added ``"size"`` field, to
  ``<topic>.enriched``, and left to the ack policy; the output is published only if the attempt
  settles the message as handled;
- a payload that is not a valid order is rejected (``Decision.REJECT``), and nothing is
  forwarded.
"""

from componentize_py_types import Err

import wit_world
from wit_world.imports.log import Level, log
from wit_world.imports.producer import OutputRecord, send
from wit_world.imports.types import Decision, HandlerError_Fatal, Message

from order_event import MalformedOrder, enrich_order


class WitWorld(wit_world.WitWorld):
    def handle(self, msg: Message) -> Decision | None:
        try:
            order_id, enriched = enrich_order(msg.payload)
        except MalformedOrder as err:
            log(Level.WARN, f"rejecting malformed order: {err}")
            return Decision.REJECT
        record = OutputRecord(
            topic=f"{msg.topic}.enriched",
            key=order_id.encode(),
            payload=enriched,
            headers=[],
            partition=None,
        )
        try:
            send(record)
        except Err as err:
            # The pipeline does not declare the topic in `outputs`: no redelivery can fix that.
            raise Err(HandlerError_Fatal(f"order {order_id}: cannot forward it: {err.value}"))
        return None
