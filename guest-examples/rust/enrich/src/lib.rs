//! An example Ackbar handler that produces (consume-transform-produce):
//!
//! - a valid order is forwarded to `<topic>.enriched`, keyed by its id, with an added field
//!   `"size"` (`"bulk"` from 10 items, else `"standard"`); the message is then left to the ack
//!   policy, and the output is published only if the attempt settles the message as handled;
//! - a payload that is not a valid order is rejected: nothing is forwarded (and the pipeline's
//!   dead-letter topic, if it has one, gets the original).

use ackbar_guest::{log, send_to, Decision, Guest, HandlerError, Level, Message};
use order_model::Order;

/// Orders of at least this many items are `"bulk"`.
pub const BULK_FROM: u32 = 10;

/// The enriched order: the original JSON object with `"size"` added, or why it is not an order.
pub fn enrich(payload: &[u8]) -> Result<(String, Vec<u8>), String> {
    let order = Order::parse(payload)?;
    order.check_quantity()?;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let size = if order.quantity >= BULK_FROM {
        "bulk"
    } else {
        "standard"
    };
    fields.insert("size".into(), size.into());
    let enriched = serde_json::to_vec(&fields).map_err(|e| e.to_string())?;
    Ok((order.id, enriched))
}

pub struct Enrich;

impl Guest for Enrich {
    fn handle(msg: Message) -> Result<Option<Decision>, HandlerError> {
        match enrich(msg.payload.as_deref().unwrap_or_default()) {
            Ok((id, enriched)) => {
                let topic = format!("{}.enriched", msg.topic);
                // Not declared in the pipeline's `outputs`: a configuration error no redelivery
                // can fix.
                send_to(&topic, Some(id.as_bytes()), &enriched)
                    .map_err(|e| HandlerError::Fatal(format!("order {id}: {e:?}")))?;
                Ok(None)
            }
            Err(why) => {
                log(Level::Warn, &format!("rejecting malformed order: {why}"));
                Ok(Some(Decision::Reject))
            }
        }
    }
}

ackbar_guest::export!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use ackbar_guest::testing::{self, End};

    fn run(payload: &[u8]) -> testing::Run {
        let mut msg = testing::message(payload);
        msg.topic = "orders".into();
        testing::run::<Enrich>(msg)
    }

    #[test]
    fn a_valid_order_is_forwarded_with_its_size() {
        let done = run(br#"{"id":"o1","item":"book","quantity":12}"#);
        assert_eq!(done.end, End::Returned(Ok(None)));
        let sent = done.sent_to("orders.enriched");
        assert_eq!(sent.len(), 1);
        let enriched: serde_json::Value = serde_json::from_slice(sent[0]).unwrap();
        assert_eq!(enriched["size"], "bulk");
        assert_eq!(enriched["id"], "o1");
        assert_eq!(done.sent[0].key.as_deref(), Some(&b"o1"[..]));
    }

    #[test]
    fn a_malformed_order_is_rejected_and_forwards_nothing() {
        let done = run(b"not an order");
        assert_eq!(done.settled(), Some(Decision::Reject));
        assert!(done.sent.is_empty());
        assert!(done.logged("rejecting malformed order"));
        let empty = run(br#"{"id":"o2","item":"book","quantity":0}"#);
        assert_eq!(empty.settled(), Some(Decision::Reject));
        assert!(empty.sent.is_empty());
    }
}
