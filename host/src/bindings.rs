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
