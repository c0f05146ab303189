//! One partition's worker: reads its queue in order and sees each message through the plugin and
//! the policy to a commit or a seek.

use super::context::{PipelineContext, Shared};
use crate::bindings::{Header, Message};
use crate::offsets::{Completion, TopicPartition};
use crate::plugin::CallContext;
use crate::policy::{self, Action};
use crate::report::MessageReport;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message as _, Offset};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// After this many nacks of one message, each further one is logged as a warning.
const REPEATED_FAILURE_WARN_AT: u32 = 3;
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies a Kafka message into the guest's `message` record.
pub(crate) fn to_guest_message(msg: &BorrowedMessage<'_>, attempt: u32) -> Message {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        topic: msg.topic().to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().map(<[u8]>::to_vec),
        headers,
        attempt,
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    tp: TopicPartition,
    queue: StreamPartitionQueue<PipelineContext>,
    stop: CancellationToken,
) {
    let policy = shared.config.ack_policy;
    // How many times this host has nacked each not-yet-settled offset of the partition.
    let mut nacks: HashMap<i64, u32> = HashMap::new();
    tracing::debug!(pipeline = %shared.name, partition = %tp, "partition worker started");

    loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            received = queue.recv() => received,
        };
        let message = match received {
            Ok(m) => {
                shared.consume_faults.recovered(&shared.name);
                let attempt = nacks.get(&m.offset()).map_or(1, |n| n + 1);
                to_guest_message(&m, attempt)
            }
            Err(e) => {
                shared
                    .consume_faults
                    .fault(&shared.name, &format!("{tp}: {e}"));
                continue;
            }
        };
        let offset = message.offset;
        let attempt = message.attempt;
        match shared.tracker().get_mut(&tp) {
            Some(progress) => progress.begin(offset),
            None => break, // revoked under our feet
        }

        // The version current when the message starts handles it, even if a reload lands meanwhile.
        let pool = shared.plugin.current();
        let version = pool.plugin().version_shared();
        let context = CallContext {
            pipeline: shared.name.clone(),
            plugin_version: version.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
        };
        let started = Instant::now();
        let outcome = match tokio::task::spawn_blocking(move || pool.call(&message, context)).await
        {
            Ok(outcome) => outcome,
            Err(join_error) => {
                // The host itself panicked during the call: leave the message unsettled and stop
                // this partition; the supervisor of the pipeline sees the failure.
                tracing::error!(pipeline = %shared.name, partition = %tp, offset, "handler call panicked in the host: {join_error}");
                break;
            }
        };
        let elapsed = started.elapsed();
        let action = policy::decide(policy, &outcome);
        shared.stats.record(&outcome, action);
        log_outcome(&shared.name, &tp, offset, attempt, &outcome, action);

        let settled = match action {
            Action::Commit | Action::Reject => Some(Completion::Settled),
            Action::Nothing => Some(Completion::Unsettled),
            Action::Seek => None,
        };
        if let Some(report) = &shared.reports {
            let _ = report.send(MessageReport {
                pipeline: shared.name.clone(),
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                attempt,
                plugin_version: version,
                outcome,
                action,
                elapsed,
            });
        }
        match settled {
            Some(how) => {
                if let Some(progress) = shared.tracker().get_mut(&tp) {
                    progress.complete(offset, how);
                }
                nacks.retain(|&o, _| o > offset);
            }
            None => {
                if let Some(progress) = shared.tracker().get_mut(&tp) {
                    progress.nack(offset);
                }
                let count = nacks.entry(offset).or_insert(0);
                *count += 1;
                let count = *count;
                if count >= REPEATED_FAILURE_WARN_AT {
                    tracing::warn!(
                        pipeline = %shared.name, partition = %tp, offset, nacks = count,
                        "message keeps failing; the partition waits for it (nothing after it is handled)"
                    );
                }
                if !seek_back(&shared, &tp, offset, &stop).await {
                    break;
                }
                let delay = shared.config.backoff.delay(count);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::debug!(pipeline = %shared.name, partition = %tp, "partition worker stopped");
}

/// Seeks the partition back to `offset`, retrying until it works or the worker is stopped:
/// going on without the seek would skip the nacked message.
async fn seek_back(
    shared: &Arc<Shared>,
    tp: &TopicPartition,
    offset: i64,
    stop: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(consumer) = shared.consumer() else {
            return false;
        };
        let topic = tp.topic.clone();
        let partition = tp.partition;
        let result = tokio::task::spawn_blocking(move || {
            consumer.seek(&topic, partition, Offset::Offset(offset), SEEK_TIMEOUT)
        })
        .await;
        match result {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => {
                shared
                    .consume_faults
                    .fault(&shared.name, &format!("seek {tp} to {offset}: {e}"));
            }
            Err(e) => tracing::error!(pipeline = %shared.name, "seek task failed: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn log_outcome(
    pipeline: &str,
    tp: &TopicPartition,
    offset: i64,
    attempt: u32,
    outcome: &crate::outcome::Outcome,
    action: Action,
) {
    use crate::outcome::CallEnd;
    match &outcome.end {
        CallEnd::Trapped {
            kind,
            detail,
            stderr,
        } => tracing::warn!(
            pipeline, partition = %tp, offset, attempt, trap = %kind, ?action,
            guest_output = %stderr.trim_end(),
            "handler trapped; instance discarded: {}", detail.lines().next().unwrap_or_default()
        ),
        CallEnd::Failed { message, .. } => tracing::debug!(
            pipeline, partition = %tp, offset, attempt, ?action, "handler error: {message}"
        ),
        _ => tracing::debug!(
            pipeline, partition = %tp, offset, attempt, outcome = %outcome.label(), ?action, "handled"
        ),
    }
}
