//! The order event both example handlers understand (see guest-examples/README.md).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Order {
    pub id: String,
    pub item: String,
    pub quantity: u32,
    #[serde(default)]
    pub warehouse: Option<String>,
}

impl Order {
    /// Parses a payload; the error says why it is not an order.
    pub fn parse(payload: &[u8]) -> Result<Order, String> {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    }

    /// A well-formed order asks for at least one item.
    pub fn check_quantity(&self) -> Result<(), String> {
        if self.quantity == 0 {
            return Err(format!("order {}: quantity must be positive", self.id));
        }
        Ok(())
    }

    pub fn in_warehouse(&self, name: &str) -> bool {
        self.warehouse.as_deref() == Some(name)
    }

    /// The line logged for an accepted order.
    pub fn summary(&self) -> String {
        format!("order {}: {} x {}", self.id, self.quantity, self.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_order_and_refuses_other_shapes() {
        let order = Order::parse(br#"{"id":"o1","item":"book","quantity":2}"#).unwrap();
        assert_eq!(order.summary(), "order o1: 2 x book");
        assert!(Order::parse(b"not json").is_err());
        assert!(Order::parse(br#"{"id":"o1","item":"book","quantity":-1}"#).is_err());
        assert!(Order::parse(br#"{"id":1,"item":"book","quantity":1}"#).is_err());
    }
}
