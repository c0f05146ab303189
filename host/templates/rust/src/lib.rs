//! The `{{name}}` handler: Ackbar calls `handle` once per Kafka message.

use ackbar_guest::{log, Decision, Guest, HandlerError, Level, Message};

pub struct Handler;

impl Guest for Handler {
    fn handle(msg: Message) -> Result<Option<Decision>, HandlerError> {
        let payload = msg.payload.as_deref().unwrap_or_default();
        if payload.is_empty() {
            log(Level::Warn, "empty message");
            // Settle it ourselves: redelivering an empty message cannot help.
            return Ok(Some(Decision::Reject));
        }
        let text = String::from_utf8_lossy(payload);
        if text.starts_with("retry") && msg.attempt < 3 {
            // A transient failure: under NACK_ON_ERROR it is delivered again after a backoff.
            return Err(HandlerError::Retry(format!(
                "asked to retry (attempt {})",
                msg.attempt
            )));
        }
        log(
            Level::Info,
            &format!("handled {}/{}@{}: {text}", msg.topic, msg.partition, msg.offset),
        );
        // Leave the decision to the pipeline's ack policy.
        Ok(None)
    }
}

ackbar_guest::export!(Handler);

#[cfg(test)]
mod tests {
    use super::*;
    use ackbar_guest::testing::{message, run, End};

    #[test]
    fn an_empty_message_is_rejected() {
        let run = run::<Handler>(message(b""));
        assert_eq!(run.settled(), Some(Decision::Reject));
        assert!(run.logged("empty message"));
    }

    #[test]
    fn retry_fails_until_the_third_attempt() {
        let first = run::<Handler>(message(b"retry please"));
        assert_eq!(
            first.end,
            End::Returned(Err(HandlerError::Retry("asked to retry (attempt 1)".into())))
        );
        let mut third = message(b"retry please");
        third.attempt = 3;
        assert_eq!(run::<Handler>(third).end, End::Returned(Ok(None)));
    }

    #[test]
    fn anything_else_is_logged_and_left_to_the_policy() {
        let run = run::<Handler>(message(b"hello"));
        assert_eq!(run.end, End::Returned(Ok(None)));
        assert_eq!(run.settled(), None);
        assert!(run.logged("handled test/0@0: hello"));
    }
}
