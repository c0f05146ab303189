//! Write an Ackbar handler in Rust and unit-test it natively, without Wasm or a broker.
//!
//! ```ignore
//! use ackbar_guest::{ack, interrupt, log, Decision, Guest, HandlerError, Level, Message};
//!
//! struct MyHandler;
//!
//! impl Guest for MyHandler {
//!     fn handle(msg: Message) -> Result<Option<Decision>, HandlerError> {
//!         log(Level::Info, "hello");
//!         ack();
//!         Ok(None)
//!     }
//! }
//!
//! ackbar_guest::export!(MyHandler);
//! ```
//!
//! Handlers call the free functions [`ack`], [`nack`], [`reject`], [`interrupt`], [`log`] and
//! [`send`] (records to the pipeline's output topics, published only if the attempt succeeds).
//! Compiled for `wasm32-wasip2` they are the host's imports; compiled natively (`cargo test`)
//! they are recorded by [`testing::run`], which returns everything the handler did.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "packed-batch-handler",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "ackbar_guest::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::ackbar::plugin::log::Level;
pub use bindings::ackbar::plugin::producer::{OutputRecord, SendError};
pub use bindings::ackbar::plugin::types::Header;
pub use bindings::{Decision, HandlerError, Message};

/// A message handler: what [`export!`] makes the component's `handle`.
pub trait Guest {
    /// Handle one message. `Ok(None)` leaves the decision to the ack policy; `Ok(Some(d))`
    /// settles the message with `d`; `Err(e)` is a handler failure.
    fn handle(msg: Message) -> Result<Option<Decision>, HandlerError>;
}

/// Exports a [`Guest`] as the component's handler (WIT world `packed-batch-handler`): the host
/// calls `handle` for single messages and `handle-packed-batch` for several waiting messages at
/// once, packed into one buffer; each is decoded when the batch reaches it and goes through the
/// same `handle`, so the sandbox is entered, and the batch copied into it, once per batch.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        #[doc(hidden)]
        struct AckbarExports;

        impl $crate::bindings::Guest for AckbarExports {
            fn handle(
                msg: $crate::Message,
            ) -> ::core::result::Result<::core::option::Option<$crate::Decision>, $crate::HandlerError>
            {
                <$handler as $crate::Guest>::handle(msg)
            }

            fn handle_packed_batch(
                topic: ::std::string::String,
                partition: i32,
                count: u32,
                records: ::std::vec::Vec<u8>,
            ) {
                $crate::handle_batch::<$handler>($crate::packed::PackedMessages::new(
                    &topic, partition, count, &records,
                ))
            }
        }

        $crate::bindings::export!(AckbarExports with_types_in $crate::bindings);
    };
}

/// A batch: each message through `H::handle`, its result reported to the host, until the host
/// says stop (the rest come again later).
#[doc(hidden)]
pub fn handle_batch<H: Guest>(msgs: impl IntoIterator<Item = Message>) {
    for msg in msgs {
        let returned = H::handle(msg);
        if !bindings::ackbar::plugin::batch::finish(returned.as_ref().map(Option::as_ref)) {
            return;
        }
    }
}

pub mod packed;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// Settles the current message as acknowledged. The first decision made for a message wins.
pub fn ack() {
    settle(Decision::Ack)
}

/// Settles the current message as not acknowledged: it is delivered again after a backoff.
pub fn nack() {
    settle(Decision::Nack)
}

/// Settles the current message as rejected (committed; dead-lettered where configured).
pub fn reject() {
    settle(Decision::Reject)
}

/// Settles the current message with `decision` and ends the `handle` call at once, from any
/// depth (FastStream's `AckMessage` / `NackMessage`).
pub fn interrupt(decision: Decision) -> ! {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::ackbar::plugin::acker::interrupt(decision);
        unreachable!("the host ends the call on interrupt")
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::interrupt(decision)
}

/// Writes to the host's log, tagged with the pipeline, topic, partition and offset.
pub fn log(level: Level, text: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::ackbar::plugin::log::log(level, text);
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_log(level, text);
}

/// Adds `record` to what this attempt publishes. It is written only if the attempt settles the
/// message as handled (an ack, explicit or by the policy); a nack, reject, error or trap drops
/// everything the attempt sent. An error (a topic the pipeline does not declare in `outputs`, a
/// per-call bound) is for the handler to deal with; the call goes on.
pub fn send(record: OutputRecord) -> Result<(), SendError> {
    #[cfg(target_arch = "wasm32")]
    return bindings::ackbar::plugin::producer::send(&record);
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_send(record)
}

/// [`send`] a record with a key (optional) and a value to `topic`, without headers, letting the
/// key choose the partition.
pub fn send_to(topic: &str, key: Option<&[u8]>, payload: &[u8]) -> Result<(), SendError> {
    send(OutputRecord {
        topic: topic.to_string(),
        key: key.map(<[u8]>::to_vec),
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        partition: None,
    })
}

fn settle(decision: Decision) {
    #[cfg(target_arch = "wasm32")]
    match decision {
        Decision::Ack => bindings::ackbar::plugin::acker::ack(),
        Decision::Nack => bindings::ackbar::plugin::acker::nack(),
        Decision::Reject => bindings::ackbar::plugin::acker::reject(),
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_decision(decision);
}
