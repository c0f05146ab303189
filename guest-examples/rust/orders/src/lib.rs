//! An example Ackbar handler for JSON order events.
//!
//! - a valid order is logged and left to the ack policy (`Ok(None)`);
//! - a payload that is not an order is rejected explicitly (`Ok(Some(Decision::Reject))`):
//!   redelivering it can never help;
//! - an order whose warehouse is offline fails with a `retry` error; this example pretends the
//!   warehouse comes back on the third delivery, so under `NACK_ON_ERROR` it succeeds on attempt 3;
//! - an order for the item `"poison"` hits a bug and panics: a trap for the host.

use ackbar_guest::{log, Decision, Guest, HandlerError, Level, Message};
use order_model::Order;

/// What handling one order amounts to; kept free of Wasm so it can be unit-tested natively.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Accepted(String),
    Malformed(String),
    WarehouseOffline,
}

/// The business logic, independent of the host.
pub fn process(payload: &[u8], attempt: u32) -> Verdict {
    let order = match Order::parse(payload) {
        Ok(order) => order,
        Err(why) => return Verdict::Malformed(why),
    };
    if order.item == "poison" {
        panic!("order {}: cannot price item 'poison'", order.id);
    }
    if let Err(why) = order.check_quantity() {
        return Verdict::Malformed(why);
    }
    if order.in_warehouse("offline") && attempt < 3 {
        return Verdict::WarehouseOffline;
    }
    Verdict::Accepted(order.summary())
}

pub struct Orders;

impl Guest for Orders {
    fn handle(msg: Message) -> Result<Option<Decision>, HandlerError> {
        match process(msg.payload.as_deref().unwrap_or_default(), msg.attempt) {
            Verdict::Accepted(summary) => {
                log(Level::Info, &summary);
                Ok(None)
            }
            Verdict::Malformed(why) => {
                log(Level::Warn, &format!("rejecting malformed order: {why}"));
                Ok(Some(Decision::Reject))
            }
            Verdict::WarehouseOffline => Err(HandlerError::Retry(format!(
                "warehouse offline (attempt {})",
                msg.attempt
            ))),
        }
    }
}

ackbar_guest::export!(Orders);

#[cfg(test)]
mod tests {
    use super::*;
    use ackbar_guest::testing::{message, run, End};

    #[test]
    fn valid_order_is_accepted() {
        let verdict = process(br#"{"id":"o1","item":"book","quantity":2}"#, 1);
        assert_eq!(verdict, Verdict::Accepted("order o1: 2 x book".into()));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(process(b"not json", 1), Verdict::Malformed(_)));
    }

    #[test]
    fn offline_warehouse_recovers_on_third_attempt() {
        let order = br#"{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}"#;
        assert_eq!(process(order, 1), Verdict::WarehouseOffline);
        assert_eq!(process(order, 2), Verdict::WarehouseOffline);
        assert!(matches!(process(order, 3), Verdict::Accepted(_)));
    }

    #[test]
    #[should_panic(expected = "poison")]
    fn poison_panics() {
        process(br#"{"id":"o3","item":"poison","quantity":1}"#, 1);
    }

    // The whole handler, through the native harness: what the host would see.

    #[test]
    fn handler_logs_a_valid_order_and_leaves_the_decision_to_the_policy() {
        let run = run::<Orders>(message(br#"{"id":"o1","item":"book","quantity":2}"#));
        assert_eq!(run.end, End::Returned(Ok(None)));
        assert_eq!(run.settled(), None);
        assert_eq!(run.logs, vec![(Level::Info, "order o1: 2 x book".into())]);
    }

    #[test]
    fn handler_rejects_zero_quantity_and_retries_an_offline_warehouse() {
        let run_zero = run::<Orders>(message(br#"{"id":"o4","item":"pen","quantity":0}"#));
        assert_eq!(run_zero.settled(), Some(Decision::Reject));
        let offline = message(br#"{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}"#);
        assert_eq!(
            run::<Orders>(offline).end,
            End::Returned(Err(HandlerError::Retry(
                "warehouse offline (attempt 1)".into()
            )))
        );
    }

    #[test]
    fn handler_panic_is_reported_as_a_trap() {
        let run = run::<Orders>(message(br#"{"id":"o3","item":"poison","quantity":1}"#));
        assert!(matches!(&run.end, End::Trapped(text) if text.contains("poison")));
    }
}
