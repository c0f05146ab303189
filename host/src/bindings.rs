//! Host bindings generated from `wit/` (the single source of truth for the guest contract).

pub use generated::*;

// The WIT items carry the WIT's doc comments; bindgen's own glue (package modules, `use`
// aliases, linker and typed-function helpers) has no WIT definition to document it from.
#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit",
        imports: {
            // `interrupt` ends the guest's call by returning an error from the host.
            "ackbar:plugin/acker.interrupt": trappable,
        },
        // `handle` runs on a fiber, so a call can be cut off at its deadline even while the
        // guest waits inside a host call (a sleep, a poll, an HTTP response).
        exports: { default: async },
        // Outputs are compared in tests and `ackbar invoke`.
        additional_derives: [PartialEq],
    });
}

pub use ackbar::plugin::log::Level;
pub use ackbar::plugin::types::Header;

/// The WIT `decision` (the host's own is [`crate::outcome::Decision`]).
pub(crate) type WitDecision = Decision;

/// The WIT package this host implements.
pub(crate) const WIT_PACKAGE: &str = "ackbar:plugin@0.1.0";

impl From<WitDecision> for crate::outcome::Decision {
    fn from(d: WitDecision) -> Self {
        match d {
            WitDecision::Ack => crate::outcome::Decision::Ack,
            WitDecision::Nack => crate::outcome::Decision::Nack,
            WitDecision::Reject => crate::outcome::Decision::Reject,
        }
    }
}

/// A consumed message's fields as the host reads them, wherever the message is kept: a
/// [`Message`] of its own, or one still in librdkafka's fetch buffer that a batch packs for the
/// guest without copying it first.
pub trait MessageFields {
    /// Its offset in its partition.
    fn offset(&self) -> i64;
    /// When it was produced or appended, in milliseconds since the epoch, if the broker says.
    fn timestamp(&self) -> Option<i64>;
    /// 1 for the first delivery, +1 for each redelivery.
    fn attempt(&self) -> u32;
    /// Its key, if it has one.
    fn key(&self) -> Option<&[u8]>;
    /// Its payload, if it is not a tombstone.
    fn payload(&self) -> Option<&[u8]>;
    /// Calls `each` with every header's name and value (`None` for a header without one), in
    /// order. Kafka does not promise UTF-8 names; the WIT's are strings, so users of a name
    /// convert it lossily.
    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a [u8], Option<&'a [u8]>));

    /// Bytes of its key, payload and headers.
    fn bytes(&self) -> usize {
        let mut headers = 0;
        self.for_each_header(&mut |name, value| {
            headers += name.len() + value.map_or(0, <[u8]>::len);
        });
        self.key().map_or(0, <[u8]>::len) + self.payload().map_or(0, <[u8]>::len) + headers
    }

    /// The value of the first header named `name` (ASCII case ignored), if it has one.
    fn header(&self, name: &str) -> Option<&[u8]> {
        let mut found = None;
        self.for_each_header(&mut |key, value| {
            if found.is_none() && key.eq_ignore_ascii_case(name.as_bytes()) {
                found = Some(value);
            }
        });
        found.flatten()
    }
}

impl MessageFields for Message {
    fn offset(&self) -> i64 {
        self.offset
    }

    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn for_each_header<'a>(&'a self, each: &mut dyn FnMut(&'a [u8], Option<&'a [u8]>)) {
        for header in &self.headers {
            each(header.key.as_bytes(), header.value.as_deref());
        }
    }
}
