//! A `handle-batch` call as a partition's worker sees it: the messages it took, given back in
//! order, each with its first call's settlement as soon as the guest has finished it. The worker
//! settles a message while the call goes on with the next, so a batch commits, publishes and
//! drains like the single calls it replaces.

use super::handler_call::{message_span, Called, HandlerCall};
use super::partition_queue::Taken;
use crate::bindings::{Message, MessageFields};
use crate::events::BatchCalled;
use crate::offsets::TopicPartition;
use crate::plugin::{BatchCall, BatchMessages, Finished, InstancePool, PackedBatch};
use crate::telemetry::spans::DeliveryTrace;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A batch call under way, and the messages it took.
pub(crate) struct BatchRun {
    pool: Arc<InstancePool>,
    messages: Held,
    spans: Arc<[tracing::Span]>,
    /// Each message's `process` span, taken when the message is given back.
    traces: Vec<DeliveryTrace>,
    /// The next message to give back.
    next: usize,
    finished: mpsc::UnboundedReceiver<Finished>,
    /// `None` once the call has ended.
    call: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl BatchRun {
    /// Starts one `handle-batch` call of `pool` on `messages` (all on their first delivery),
    /// under the tenant's limits: one call slot, and the tenant's guest time charged for the
    /// whole call. Nothing runs until [`next`](Self::next) is awaited.
    pub fn start(
        handler: &HandlerCall<'_>,
        pool: Arc<InstancePool>,
        mut messages: Vec<Taken>,
    ) -> Self {
        let shared = handler.shared.clone();
        let tp = handler.tp;
        let version = pool.plugin().version_shared();
        let spans: Arc<[tracing::Span]> = messages
            .iter()
            .map(|message| message_span(&shared, tp, message, version))
            .collect();
        // A traced delivery's span names the message's topic, size and key: with tracing on,
        // each message is copied out of librdkafka for it.
        let traces: Vec<DeliveryTrace> = match DeliveryTrace::on() {
            true => messages
                .iter_mut()
                .map(|m| DeliveryTrace::start(&handler.handler(version), m.copy_out(tp), None))
                .collect(),
            false => messages.iter().map(|_| DeliveryTrace::default()).collect(),
        };
        let contexts: Arc<[_]> = traces.iter().map(|t| t.context().cloned()).collect();
        BatchCalled {
            taken: messages.len() as u64,
        }
        .emit(&handler.observers());
        let (sink, finished) = mpsc::unbounded_channel();
        let batch = BatchCall::new(
            &messages,
            spans.clone(),
            handler.rules,
            handler.stop.clone(),
            sink,
        )
        .with_traces(contexts);
        // A packed batch is all the call needs: the worker keeps the messages themselves, and
        // copies out only those it must see through further.
        let (messages, prepared) = if pool.packs() {
            let packed = PackedBatch::of(&tp.topic, tp.partition, &messages);
            (
                Held::Owned(messages.into_iter().map(Some).collect()),
                Prepared::Packed(packed),
            )
        } else {
            let messages: Arc<[Message]> = messages
                .into_iter()
                .map(|message| message.into_message(tp))
                .collect();
            (Held::Shared(messages.clone()), Prepared::Listed(messages))
        };
        let call = {
            let pool = pool.clone();
            let (context, stop) = (handler.context.clone(), handler.stop.clone());
            async move {
                if !shared.budget.wait_for_guest_time(&stop).await {
                    return;
                }
                // Held (and charged to the tenant's guest time) until the call ends or is
                // dropped.
                let Some(_call_slot) = shared.budget.call_slot(&stop).await else {
                    return;
                };
                let messages = match &prepared {
                    Prepared::Packed(packed) => BatchMessages::Packed(packed),
                    Prepared::Listed(messages) => BatchMessages::Listed(messages),
                };
                pool.call_prepared_batch(messages, batch, &context).await;
            }
        };
        BatchRun {
            pool,
            messages,
            spans,
            traces,
            next: 0,
            finished,
            call: Some(Box::pin(call)),
        }
    }

    /// Whether [`next`](Self::next) would wait for the guest: it has not finished the next
    /// message yet.
    pub fn would_wait(&self) -> bool {
        self.call.is_some() && self.finished.is_empty()
    }

    /// The next message in order, with its first call, settled, when the batch handled it, or
    /// without one when the batch stopped before it (the worker calls the handler for it
    /// alone). Waits while the call is still on it. `None` when every message was given back.
    pub async fn next(&mut self, handler: &HandlerCall<'_>) -> Option<(Taken, Option<FirstCall>)> {
        let index = self.next;
        if self.messages.get(index).is_none() {
            // Every message is back, but the guest may still be running after its last
            // `finish`: the call ends before the worker goes on (bounded by the last message's
            // deadline), so its instance goes back to the pool instead of being dropped.
            if let Some(call) = self.call.take() {
                call.await;
            }
            return None;
        }
        let done = loop {
            match &mut self.call {
                Some(call) => {
                    tokio::select! {
                        biased;
                        Some(done) = self.finished.recv() => break Some(done),
                        () = call.as_mut() => self.call = None,
                    }
                }
                // Whatever the call finished is in the channel by the time it has ended.
                None => break self.finished.try_recv().ok(),
            }
        };
        self.next += 1;
        let first = done.map(|done| {
            let version = self.pool.plugin().version_shared();
            let message = self.messages.get(index).expect("not given back yet");
            let trace = std::mem::take(&mut self.traces[index]);
            let called = handler.record(version, message, &self.spans[index], trace, 1, done);
            (self.pool.clone(), called)
        });
        Some((self.messages.take(index), first))
    }

    /// Copies the messages not given back yet out of librdkafka (see [`Taken::copy_out`]).
    pub fn copy_out_held(&mut self, tp: &TopicPartition) {
        if let Held::Owned(messages) = &mut self.messages {
            for message in messages.iter_mut().flatten() {
                message.copy_out(tp);
            }
        }
    }

    /// Ends the call where it is (an aborted transaction rewound the partition): the offsets of
    /// the messages not given back yet, which stay unsettled.
    pub fn abandon(self) -> impl Iterator<Item = i64> {
        let BatchRun { messages, next, .. } = self;
        (next..messages.len()).filter_map(move |i| messages.get(i).map(|m| m.offset()))
    }
}

/// What the call is given.
enum Prepared {
    Packed(PackedBatch),
    Listed(Arc<[Message]>),
}

/// The messages of a batch, as the worker holds them until they are given back.
enum Held {
    /// The call has them packed: each is given back as it is.
    Owned(Vec<Option<Taken>>),
    /// Shared with the call, which hands them to the guest as a list: each is given back as a
    /// copy.
    Shared(Arc<[Message]>),
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Owned(messages) => messages.len(),
            Held::Shared(messages) => messages.len(),
        }
    }

    /// The message at `index`, if it has not been given back.
    fn get(&self, index: usize) -> Option<&dyn MessageFields> {
        match self {
            Held::Owned(messages) => Some(messages.get(index)?.as_ref()?),
            Held::Shared(messages) => Some(messages.get(index)?),
        }
    }

    /// Gives back the message at `index`, which [`get`](Self::get) found.
    fn take(&mut self, index: usize) -> Taken {
        match self {
            Held::Owned(messages) => messages[index].take().expect("given back once"),
            Held::Shared(messages) => Taken::Copied(messages[index].clone()),
        }
    }
}

/// A message's first call, made by a batch: the plugin version that handled it, settled.
pub(crate) type FirstCall = (Arc<InstancePool>, Called);
