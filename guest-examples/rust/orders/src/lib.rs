//! An example Ackbar handler for JSON order events.
//!
//! - a valid order is logged and left to the ack policy (`Ok(None)`);
//! - a payload that is not an order is rejected explicitly (`Ok(Some(Decision::Reject))`):
//!   redelivering it can never help;
//! - an order whose warehouse is offline fails with a `retry` error; this example pretends the
//!   warehouse comes back on the third delivery, so under `NACK_ON_ERROR` it succeeds on attempt 3;
//! - an order for the item `"poison"` hits a bug and panics: a trap for the host.

wit_bindgen::generate!({ world: "handler", path: "../../../wit" });

use ackbar::plugin::log::{log, Level};
use serde::Deserialize;

/// The order event this handler understands.
#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    pub item: String,
    pub quantity: u32,
    #[serde(default)]
    pub warehouse: Option<String>,
}

/// What handling one order amounts to; kept free of Wasm so it can be unit-tested natively.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Accepted(String),
    Malformed(String),
    WarehouseOffline,
}

/// The business logic, independent of the host.
pub fn process(payload: &[u8], attempt: u32) -> Verdict {
    let order: Order = match serde_json::from_slice(payload) {
        Ok(order) => order,
        Err(err) => return Verdict::Malformed(err.to_string()),
    };
    if order.item == "poison" {
        panic!("order {}: cannot price item 'poison'", order.id);
    }
    if order.quantity == 0 {
        return Verdict::Malformed(format!("order {}: quantity must be positive", order.id));
    }
    if order.warehouse.as_deref() == Some("offline") && attempt < 3 {
        return Verdict::WarehouseOffline;
    }
    Verdict::Accepted(format!(
        "order {}: {} x {}",
        order.id, order.quantity, order.item
    ))
}

struct Orders;

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

export!(Orders);

#[cfg(test)]
mod tests {
    use super::*;

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
}
