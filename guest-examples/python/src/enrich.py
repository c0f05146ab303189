"""An Ackbar handler that produces.

- each valid order is forwarded, keyed by its id and with an added ``"size"`` field, to
  ``<topic>.enriched``, and left to the ack policy; the output is published only if the attempt
  settles the message as handled;
- a payload that is not a valid order is rejected (``Decision.REJECT``), and nothing is
  forwarded;
- a refused send (the pipeline does not declare the topic in ``outputs``) raises ``Fatal``.
"""

from ackbar_guest import Decision, Fatal, Level, Message, SendError, export, log, send_to

from order_event import MalformedOrder, enrich_order


class Enrich:
    def handle(self, msg: Message) -> Decision | None:
        try:
            order_id, enriched = enrich_order(msg.payload)
        except MalformedOrder as err:
            log(Level.WARN, f"rejecting malformed order: {err}")
            return Decision.REJECT
        try:
            send_to(f"{msg.topic}.enriched", order_id, enriched)
        except SendError as err:
            # A configuration error: no redelivery can fix it.
            raise Fatal(f"order {order_id}: cannot forward it: {err}") from None
        return None


WitWorld = export(Enrich)
