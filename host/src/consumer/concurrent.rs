//! The concurrent worker (`ordering = "key"` or `"unordered"`).

use super::handler_call::call_context;
use super::handler_call::HandlerCall;
use super::partition::{finished, next_message, Next};
use super::partition_queue::PartitionQueue;
use super::state::PipelineState;
use super::verdict::Delivery;
use crate::config::Ordering;
use crate::metrics::MessageMetrics;
use crate::offsets::TopicPartition;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `ordering = "key"` or `"unordered"`: up to `max_in_flight` messages of the partition at once,
/// each on its own task. Under `key`, a message waits until the previous message with the same
/// key has settled. Offsets are still committed only up to the first unfinished message.
pub(super) async fn run(
    shared: &Arc<PipelineState>,
    tp: &TopicPartition,
    mut queue: PartitionQueue,
    stop: &CancellationToken,
    metrics: Arc<MessageMetrics>,
) {
    let by_key = shared.config.ordering == Ordering::Key;
    let permits = Arc::new(Semaphore::new(shared.config.max_in_flight));
    // The settled-signal of the latest message of each key. `true` once it settled; a sender
    // dropped without `true` means it never settled (stopped), so the key's later messages
    // must not run either.
    let mut lanes: HashMap<Option<Vec<u8>>, watch::Receiver<bool>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let trap_streak = Arc::new(AtomicU32::new(0));
    let context = call_context(shared, tp);
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let Next::Message(message) = next_message(shared, tp, &mut queue, stop, None).await else {
            break;
        };
        let offset = message.offset;
        let (previous, settled_tx) = if by_key {
            if lanes.len() > 4 * shared.config.max_in_flight {
                // Forget keys whose last message settled: nothing waits on them.
                lanes.retain(|_, rx| !*rx.borrow() && rx.has_changed().is_ok());
            }
            let (tx, rx) = watch::channel(false);
            (lanes.insert(message.key.clone(), rx), Some(tx))
        } else {
            (None, None)
        };
        let (shared, tp, stop, metrics, trap_streak, context) = (
            shared.clone(),
            tp.clone(),
            stop.clone(),
            metrics.clone(),
            trap_streak.clone(),
            context.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(mut previous) = previous {
                let ready = tokio::select! {
                    biased;
                    _ = stop.cancelled() => false,
                    settled = previous.wait_for(|settled| *settled) => settled.is_ok(),
                };
                if !ready {
                    finished(&shared, &tp, offset, None);
                    return;
                }
            }
            let delivery = Delivery {
                call: HandlerCall::new(&shared, &tp, &metrics, &stop, &trap_streak, &context),
                transactions: None,
                pipeline_writes: false,
            };
            let settled = delivery.until_settled(message, None).await;
            if finished(&shared, &tp, offset, settled.ok().map(|d| d.how)) {
                if let Some(tx) = settled_tx {
                    let _ = tx.send(true);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    // Stopping: let the messages in flight finish (their redeliveries stop at once).
    while tasks.join_next().await.is_some() {}
}
