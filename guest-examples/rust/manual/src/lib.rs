//! An example Ackbar handler that settles every order itself, for the `MANUAL` ack policy.
//!
//! - malformed → `reject()`;
//! - `"poison"` → panic (a trap);
//! - stock checks two calls deep may end the call at once: a `"duplicate"` order was handled
//!   before → `interrupt(Ack)`; a `"busy"` warehouse on the first delivery → `interrupt(Nack)`;
//! - an `"offline"` warehouse before the third delivery → `nack()`;
//! - otherwise the order is logged and `ack()`ed.

use ackbar_guest::{
    ack, interrupt, log, nack, reject, Decision, Guest, HandlerError, Level, Message,
};
use order_model::Order;

pub struct Manual;

impl Guest for Manual {
    fn handle(msg: Message) -> Result<Option<Decision>, HandlerError> {
        let order =
            match Order::parse(msg.payload.as_deref().unwrap_or_default()).and_then(|order| {
                if order.item == "poison" {
                    panic!("order {}: cannot price item 'poison'", order.id);
                }
                order.check_quantity().map(|()| order)
            }) {
                Ok(order) => order,
                Err(why) => {
                    log(Level::Warn, &format!("rejecting malformed order: {why}"));
                    reject();
                    return Ok(None);
                }
            };
        reserve(&order, msg.attempt);
        if order.in_warehouse("offline") && msg.attempt < 3 {
            nack();
            return Ok(None);
        }
        log(Level::Info, &order.summary());
        ack();
        Ok(None)
    }
}

fn reserve(order: &Order, attempt: u32) {
    check_stock(order, attempt);
}

/// Deep in the business logic, some answers end the call at once.
fn check_stock(order: &Order, attempt: u32) {
    if order.item == "duplicate" {
        interrupt(Decision::Ack);
    }
    if order.in_warehouse("busy") && attempt < 2 {
        interrupt(Decision::Nack);
    }
}

ackbar_guest::export!(Manual);

#[cfg(test)]
mod tests {
    use super::*;
    use ackbar_guest::testing::{message, run, End};

    fn attempt(payload: &[u8], attempt: u32) -> ackbar_guest::testing::Run {
        let mut msg = message(payload);
        msg.attempt = attempt;
        run::<Manual>(msg)
    }

    #[test]
    fn acks_a_valid_order_after_logging_it() {
        let run = attempt(br#"{"id":"o1","item":"book","quantity":2}"#, 1);
        assert_eq!(run.decisions, vec![Decision::Ack]);
        assert!(run.logged("order o1: 2 x book"));
    }

    #[test]
    fn rejects_malformed_orders() {
        assert_eq!(attempt(b"{}", 1).decisions, vec![Decision::Reject]);
        let zero = attempt(br#"{"id":"o","item":"pen","quantity":0}"#, 1);
        assert_eq!(zero.decisions, vec![Decision::Reject]);
    }

    #[test]
    fn interrupts_from_the_stock_check() {
        let dup = attempt(br#"{"id":"o5","item":"duplicate","quantity":1}"#, 1);
        assert_eq!(dup.end, End::Interrupted(Decision::Ack));
        assert!(dup.decisions.is_empty());
        let busy = br#"{"id":"o6","item":"pen","quantity":1,"warehouse":"busy"}"#;
        assert_eq!(attempt(busy, 1).end, End::Interrupted(Decision::Nack));
        assert_eq!(attempt(busy, 2).settled(), Some(Decision::Ack));
    }

    #[test]
    fn nacks_an_offline_warehouse_until_the_third_delivery() {
        let offline = br#"{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}"#;
        assert_eq!(attempt(offline, 2).decisions, vec![Decision::Nack]);
        assert_eq!(attempt(offline, 3).decisions, vec![Decision::Ack]);
    }

    #[test]
    fn poison_traps() {
        let run = attempt(br#"{"id":"o3","item":"poison","quantity":1}"#, 1);
        assert!(matches!(run.end, End::Trapped(text) if text.contains("poison")));
    }
}
