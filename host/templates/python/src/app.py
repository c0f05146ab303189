"""The {{name}} handler: Ackbar calls `handle` once per Kafka message."""

from ackbar_guest import Decision, Level, Message, Retry, export, log


class Handler:
    def handle(self, msg: Message) -> Decision | None:
        if not msg.payload:
            log(Level.WARN, "empty message")
            # Settle it ourselves: redelivering an empty message cannot help.
            return Decision.REJECT
        if msg.payload.startswith(b"retry") and msg.attempt < 3:
            # A transient failure: under NACK_ON_ERROR it is delivered again after a backoff.
            raise Retry(f"asked to retry (attempt {msg.attempt})")
        log(Level.INFO, f"handled {msg.topic}/{msg.partition}@{msg.offset}: {msg.text}")
        # Leave the decision to the pipeline's ack policy.
        return None


# What the component exports: componentize-py looks for `WitWorld` in this module.
WitWorld = export(Handler)
