//! One partition's worker: reads its queue in order and sees each message through the plugin and
//! the policy to a commit or a redelivery.

use super::context::{PipelineContext, Shared};
use crate::bindings::{Header, Message};
use crate::offsets::{Completion, TopicPartition};
use crate::plugin::CallContext;
use crate::policy::{self, Action};
use crate::report::MessageReport;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message as _;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// After this many nacks of one message, each further one is logged as a warning.
const REPEATED_FAILURE_WARN_AT: u32 = 3;

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
    tracing::debug!(pipeline = %shared.name, partition = %tp, "partition worker started");

    'messages: loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            received = queue.recv() => received,
        };
        let mut message = match received {
            Ok(m) => {
                shared.consume_faults.recovered(&shared.name);
                to_guest_message(&m, 1)
            }
            Err(e) => {
                shared
                    .consume_faults
                    .fault(&shared.name, &format!("{tp}: {e}"));
                continue;
            }
        };
        let offset = message.offset;
        match shared.tracker().get_mut(&tp) {
            Some(progress) => progress.begin(offset),
            None => break, // revoked under our feet
        }

        // Until the message is settled. A nacked message is redelivered from memory after the
        // backoff rather than by seeking: the effect is the same (nothing after it in the
        // partition is handled first, and it stays uncommitted, so a crash or a revoke re-reads
        // it), without a refetch from the broker per nack.
        loop {
            // The version current when a delivery starts handles it, even if a reload lands.
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
            let call = tokio::task::spawn_blocking(move || {
                let outcome = pool.call(&message, context);
                (outcome, message)
            });
            let (outcome, returned) = match call.await {
                Ok(result) => result,
                Err(join_error) => {
                    // The host itself panicked during the call: leave the message unsettled
                    // (it is re-read after a restart) and stop this partition.
                    tracing::error!(pipeline = %shared.name, partition = %tp, offset, "handler call panicked in the host: {join_error}");
                    break 'messages;
                }
            };
            message = returned;
            let elapsed = started.elapsed();
            let attempt = message.attempt;
            let action = policy::decide(policy, &outcome);
            shared.stats.record(&outcome, action);
            log_outcome(&shared.name, &tp, offset, attempt, &outcome, action);
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
                    started,
                    elapsed,
                });
            }
            let how = match action {
                Action::Commit | Action::Reject => Completion::Settled,
                Action::Nothing => Completion::Unsettled,
                Action::Redeliver => {
                    if attempt >= REPEATED_FAILURE_WARN_AT {
                        tracing::warn!(
                            pipeline = %shared.name, partition = %tp, offset, attempt,
                            "message keeps failing; the partition waits for it (nothing after it is handled)"
                        );
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break 'messages,
                        _ = tokio::time::sleep(shared.config.backoff.delay(attempt)) => {}
                    }
                    message.attempt += 1;
                    continue;
                }
            };
            if let Some(progress) = shared.tracker().get_mut(&tp) {
                progress.complete(offset, how);
            }
            break;
        }
    }
    tracing::debug!(pipeline = %shared.name, partition = %tp, "partition worker stopped");
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
