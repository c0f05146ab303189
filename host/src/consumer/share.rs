//! A share-group pipeline (`group_type = "share"`, KIP-932): acquires records, calls the
//! handler on up to `max_in_flight` of them at once, and acknowledges each one as its
//! settlement says.
//!
//! The policy table stays the one of [`DeliveryRules::settle`]; only carrying out a verdict
//! differs from a partition's worker, because the broker, not an offset, keeps each record's
//! state. The acknowledgement is decided beside the policy table, by
//! [`Settlement::share_acknowledgement`](crate::policy::Settlement::share_acknowledgement):
//!
//! | verdict | acknowledgement |
//! |---|---|
//! | commit (an ack) | ACCEPT, after the attempt's outputs are written |
//! | commit of a reject without a dead-letter topic | REJECT (archived) |
//! | dead-letter | the dead letter is written, then REJECT |
//! | redeliver after a wait | the record is kept (its lock renewed) for the wait, then RELEASE |
//! | leave (`MANUAL`, no decision) | as a redelivery: nobody settled it, so it comes back |
//!
//! `attempt` is the broker's delivery count, and `max_attempts` counts those deliveries. A
//! record whose handler is still running, or waiting for its redelivery, keeps its acquisition
//! lock: it is renewed when half of the lock is left.

use super::handler_call::{call_context, HandlerCall};
use super::state::PipelineState;
use super::verdict::{publish_at_least_once, write_dead_letter};
use crate::bindings::{Header, Message};
use crate::events::{
    AcknowledgeRefused, ConsumeFailed, MessageDone, MessageTaken, PartitionsAssigned,
    ShareAcknowledged, ShareAcquired,
};
use crate::metrics::MessageMetrics;
use crate::offsets::TopicPartition;
use crate::plugin::CallContext;
use crate::policy::{ShareAcknowledgement, Verdict};
use kafka_share::{AckKind, AcquiredRecord, RecordId, ShareConsumer, ShareConsumerConfig};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long one fetch waits on the broker for records: also the longest an acknowledgement
/// waits for the next fetch to carry it.
const FETCH_WAIT: Duration = Duration::from_millis(250);

/// A record's lock is renewed once less than this share of its duration is left: half, so a
/// worker held up by a busy machine still renews in time.
const RENEW_WHEN_LEFT: u32 = 2;

/// Runs the pipeline until its shutdown: connects, consumes, and on shutdown lets the records in
/// flight finish (up to the drain timeout), acknowledges them and leaves the group. A failure
/// it cannot handle crashes the pipeline (its supervisor restarts it); records it held are
/// then released by the broker.
pub(crate) async fn run(shared: Arc<PipelineState>) {
    let Some(consumer) = connect(&shared).await else {
        return;
    };
    let mut worker = ShareWorker {
        topics: HashMap::new(),
        contexts: HashMap::new(),
        trap_streak: Arc::new(AtomicU32::new(0)),
        held: HashMap::new(),
        waiting: VecDeque::new(),
        tasks: JoinSet::new(),
        lock_warning_logged: false,
        joined: false,
        shared,
        consumer,
    };
    worker.consume().await;
    worker.close().await;
}

async fn connect(shared: &PipelineState) -> Option<ShareConsumer> {
    let config = &shared.config;
    let group = config.group_id.clone().unwrap_or_default();
    set_start(shared, &group).await;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    let mut settings = ShareConsumerConfig::new(shared.bootstrap.clone(), group.clone(), &topics);
    settings.client_id = format!("ackbar-{}", shared.name);
    settings.max_wait = FETCH_WAIT;
    settings.max_records = config.max_in_flight as u32;
    let connected = tokio::select! {
        _ = shared.shutdown.cancelled() => return None,
        connected = tokio::time::timeout(config.connect_timeout, ShareConsumer::connect(settings)) => connected,
    };
    match connected {
        Ok(Ok(consumer)) => {
            shared.recorder.in_span(
                || tracing::info!(%group, member = consumer.member_id(), "joined the share group"),
            );
            Some(consumer)
        }
        Ok(Err(e)) => {
            shared.crash(format!(
                "share group '{group}' at {}: {e}",
                shared.bootstrap
            ));
            None
        }
        Err(_) => {
            shared.crash(format!(
                "share group '{group}': cannot reach Kafka at {} within {} ms",
                shared.bootstrap,
                config.connect_timeout.as_millis()
            ));
            None
        }
    }
}

/// Where the group starts reading a partition it has not read before: a share group starts at
/// the latest offset unless its `share.auto.offset.reset` says otherwise, while Ackbar's
/// pipelines start at the earliest unless `auto.offset.reset` says otherwise. The group config
/// is set to the pipeline's; it only matters for partitions the group has never read. Without
/// the right to alter the group's configs this is a warning, not a failure.
async fn set_start(shared: &PipelineState, group: &str) {
    let start = match shared
        .config
        .kafka
        .get("auto.offset.reset")
        .map(String::as_str)
    {
        Some("latest" | "largest" | "end") => "latest",
        _ => "earliest",
    };
    let set = async {
        let mut admin = kafka_share::Admin::connect(&shared.bootstrap).await?;
        admin
            .set_group_config(group, &[("share.auto.offset.reset", start)])
            .await
    };
    let set = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        set = tokio::time::timeout(shared.config.connect_timeout, set) => set,
    };
    match set {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shared.recorder.in_span(|| tracing::warn!(%group, "cannot set the share group's share.auto.offset.reset to {start}: {e}; the group's own setting applies"))
        }
        Err(_) => {
            shared.recorder.in_span(|| tracing::warn!(%group, "setting the share group's share.auto.offset.reset timed out; the group's own setting applies"))
        }
    }
}

/// The pipeline's one consumer and the records it holds.
struct ShareWorker {
    shared: Arc<PipelineState>,
    consumer: ShareConsumer,
    /// Per-message series and names of each topic, made on first use.
    topics: HashMap<Arc<str>, Arc<MessageMetrics>>,
    /// The call context of each partition, made on first use.
    contexts: HashMap<(Arc<str>, i32), Arc<CallContext>>,
    trap_streak: Arc<AtomicU32>,
    /// Every record this member holds (waiting for a slot, being handled, or waiting for its
    /// redelivery), with its lock deadline.
    held: HashMap<RecordId, Instant>,
    /// Records acquired beyond the free handler slots (a fetch is bounded per partition).
    waiting: VecDeque<AcquiredRecord>,
    /// One task per record being handled; each ends in the acknowledgement it wants (`None`:
    /// stopped before it settled, so it is left to be released).
    tasks: JoinSet<(RecordId, Option<AckKind>)>,
    lock_warning_logged: bool,
    /// Whether readiness was reported (the group assigned partitions).
    joined: bool,
}

impl ShareWorker {
    async fn consume(&mut self) {
        let capacity = self.shared.config.max_in_flight;
        let mut last_report = Instant::now();
        loop {
            while let Some(done) = self.tasks.try_join_next() {
                self.finished(done);
            }
            while self.tasks.len() < capacity {
                let Some(record) = self.waiting.pop_front() else {
                    break;
                };
                self.start(record);
            }
            if self.shared.shutdown.is_cancelled() || self.shared.crashed.is_cancelled() {
                return;
            }
            self.renew_locks().await;
            if !self.joined && !self.consumer.assignment().is_empty() {
                self.joined = true;
                let partitions: Vec<TopicPartition> = self
                    .consumer
                    .assignment()
                    .into_iter()
                    .map(|(topic, partition)| TopicPartition { topic, partition })
                    .collect();
                PartitionsAssigned {
                    partitions: &partitions,
                }
                .emit(&self.shared.recorder);
            }
            if self.tasks.len() < capacity && self.waiting.is_empty() {
                // Not cancelled by a shutdown: a fetch dropped midway would void the
                // acknowledgements riding on it. It returns within FETCH_WAIT.
                self.consumer
                    .set_max_records((capacity - self.tasks.len()) as u32);
                match self.consumer.poll().await {
                    Ok(records) => {
                        ShareAcquired {
                            count: records.len(),
                        }
                        .emit(&self.shared.recorder);
                        for record in &records {
                            self.held.insert(record.id(), record.lock_deadline);
                        }
                        self.waiting.extend(records);
                    }
                    Err(e) => {
                        let group = self.shared.config.group_id.as_deref().unwrap_or_default();
                        self.shared.crash(format!("share group '{group}': {e}"));
                        return;
                    }
                }
            } else {
                let renew_check = self.renew_check();
                let shutdown = self.shared.shutdown.clone();
                let done = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => None,
                    done = self.tasks.join_next() => done,
                    _ = tokio::time::sleep(renew_check) => None,
                };
                if let Some(done) = done {
                    self.finished(done);
                }
            }
            // Acknowledgements ride on fetches; their outcomes are collected (and anything still
            // pending is sent) once per commit interval.
            if last_report.elapsed() >= self.shared.config.commit_interval {
                last_report = Instant::now();
                self.flush_acks("acknowledging").await;
            }
        }
    }

    /// Hands an acquired record to a task of its own.
    fn start(&mut self, record: AcquiredRecord) {
        let id = record.id();
        let metrics = self
            .topics
            .entry(record.topic.clone())
            .or_insert_with(|| Arc::new(self.shared.recorder.topic(&record.topic)))
            .clone();
        let context = self
            .contexts
            .entry((record.topic.clone(), record.partition))
            .or_insert_with(|| {
                let tp = TopicPartition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                };
                call_context(&self.shared, &tp)
            })
            .clone();
        let (shared, trap_streak) = (self.shared.clone(), self.trap_streak.clone());
        self.tasks.spawn(async move {
            let ack = handle(&shared, record, &metrics, &trap_streak, &context).await;
            (id, ack)
        });
    }

    /// A task ended: acknowledge its record as it settled.
    fn finished(&mut self, done: Result<(RecordId, Option<AckKind>), tokio::task::JoinError>) {
        let (id, ack) = match done {
            Ok(done) => done,
            Err(e) => {
                self.shared
                    .crash(format!("a share worker task failed: {e}"));
                return;
            }
        };
        self.held.remove(&id);
        let Some(kind) = ack else {
            return;
        };
        if let Err(e) = self.consumer.acknowledge(&id, kind) {
            AcknowledgeRefused {
                record: &id,
                kind,
                error: &e,
            }
            .emit(&self.shared.recorder);
        }
    }

    /// Renews the locks of held records with less than half of their lock left.
    async fn renew_locks(&mut self) {
        let Some(lock) = self.consumer.acquisition_lock_timeout() else {
            return;
        };
        let now = Instant::now();
        let margin = lock / RENEW_WHEN_LEFT;
        let due: Vec<RecordId> = self
            .held
            .iter()
            .filter(|(_, deadline)| deadline.saturating_duration_since(now) < margin)
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        if !self.consumer.supports_renew() {
            if !self.lock_warning_logged {
                self.lock_warning_logged = true;
                self.shared.recorder.in_span(|| tracing::warn!("handlers outlast the acquisition lock ({} ms) and the broker cannot renew locks (Kafka 4.2+): such records are delivered again; lower max_in_flight or the deadline, or raise share.record.lock.duration.ms", lock.as_millis()));
            }
            return;
        }
        for id in &due {
            if self.consumer.acknowledge(id, AckKind::Renew).is_ok() {
                self.held.insert(id.clone(), now + lock);
            }
        }
        self.flush_acks("renewing locks").await;
    }

    /// How long until the next lock needs renewing (at most a second).
    fn renew_check(&self) -> Duration {
        let lock = self.consumer.acquisition_lock_timeout();
        let now = Instant::now();
        let soonest = self
            .held
            .values()
            .zip(std::iter::repeat(lock))
            .filter_map(|(deadline, lock)| {
                let renew_at = deadline.checked_sub(lock? / RENEW_WHEN_LEFT)?;
                Some(renew_at.saturating_duration_since(now))
            })
            .min();
        soonest
            .unwrap_or(Duration::MAX)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Sends pending acknowledgements now and counts the outcomes since the last report.
    async fn flush_acks(&mut self, doing: &str) {
        match self.consumer.flush_acks().await {
            Ok(report) => ShareAcknowledged { report }.emit(&self.shared.recorder),
            Err(e) => ConsumeFailed {
                error: &format_args!("{doing}: {e}"),
            }
            .emit(&self.shared.recorder),
        }
    }

    /// Lets the records in flight finish (up to the drain timeout; their redelivery waits end
    /// at once), acknowledges them, and leaves the group; the broker releases what is left.
    async fn close(mut self) {
        let drain = self.shared.config.drain_timeout;
        let mut done = Vec::new();
        let _ = tokio::time::timeout(drain, async {
            while let Some(d) = self.tasks.join_next().await {
                done.push(d);
            }
        })
        .await;
        let unfinished = self.tasks.len();
        self.tasks.abort_all();
        for d in done {
            self.finished(d);
        }
        if unfinished > 0 {
            self.shared.recorder.in_span(|| {
                tracing::warn!(
                    unfinished,
                    "records still being handled after the drain timeout are released"
                )
            });
        }
        if self.shared.crashed.is_cancelled() {
            // Leaving like a crash: the broker releases every record this member held.
            return;
        }
        let ShareWorker {
            shared, consumer, ..
        } = self;
        match consumer.close().await {
            Ok(report) => ShareAcknowledged { report }.emit(&shared.recorder),
            Err(e) => {
                shared
                    .recorder
                    .in_span(|| tracing::warn!("leaving the share group: {e}"));
            }
        }
    }
}

/// Handles one acquired record to its acknowledgement; `None` if stopped before it settled.
async fn handle(
    shared: &Arc<PipelineState>,
    record: AcquiredRecord,
    metrics: &MessageMetrics,
    trap_streak: &AtomicU32,
    context: &Arc<CallContext>,
) -> Option<AckKind> {
    let stop = &shared.shutdown;
    // The tenant's in-flight budget, shared with its other pipelines.
    if !shared.budget.admit_message(stop).await {
        return None;
    }
    let tp = TopicPartition {
        topic: record.topic.clone(),
        partition: record.partition,
    };
    let call = HandlerCall::new(shared, &tp, metrics, stop, trap_streak, context);
    MessageTaken { count: 1 }.emit(&shared.recorder);
    let offset = record.offset;
    let ack = settle(&call, record).await;
    shared.budget.message_done();
    // Settled here, whatever the broker does with the acknowledgement next.
    MessageDone {
        tp: &tp,
        offset,
        settled: ack.is_some(),
    }
    .emit(&shared.recorder);
    ack
}

async fn settle(call: &HandlerCall<'_>, record: AcquiredRecord) -> Option<AckKind> {
    let shared = call.shared;
    let message = to_guest_message(record);
    // The broker counts deliveries; they are what `max_attempts` counts too.
    let pool = shared.plugin.for_partition(message.partition);
    let called = call.once(&pool, &message, message.attempt).await?;
    let (offset, attempt) = (message.offset, message.attempt);
    let settled = called.settled;
    match settled.verdict {
        Verdict::Commit => {
            if called.publishes
                && !publish_at_least_once(call, offset, attempt, &called.outputs).await
            {
                return None;
            }
        }
        Verdict::DeadLetterThenCommit => {
            // The rules give this verdict only to a pipeline with a topic.
            if let (Some(writer), Some(letter)) =
                (&shared.dead_letters, called.dead_letter(shared, &message))
            {
                if !write_dead_letter(call, writer, &letter).await {
                    return None;
                }
            }
        }
        // Nobody settled it (MANUAL without a decision), or the handler asked for it again:
        // it is released after the backoff (a shutdown ends the wait at once) and comes back,
        // to any member, with the broker's delivery count one higher. Its outputs are dropped.
        Verdict::RedeliverAfter(_) | Verdict::Leave | Verdict::Pause => {
            let wait = match settled.verdict {
                Verdict::RedeliverAfter(wait) => wait,
                _ => shared.config.backoff.delay(attempt),
            };
            call.sleep(wait).await;
        }
    }
    Some(match settled.share_acknowledgement() {
        ShareAcknowledgement::Accept => AckKind::Accept,
        ShareAcknowledgement::Release => AckKind::Release,
        ShareAcknowledgement::Reject => AckKind::Reject,
    })
}

/// The guest's `message` record of an acquired record, `attempt` its delivery count.
fn to_guest_message(record: AcquiredRecord) -> Message {
    Message {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        timestamp: (record.timestamp >= 0).then_some(record.timestamp),
        key: record.key.map(|k| k.to_vec()),
        payload: record.value.map(|v| v.to_vec()),
        headers: record
            .headers
            .into_iter()
            .map(|(key, value)| Header {
                key,
                value: value.map(|v| v.to_vec()),
            })
            .collect(),
        attempt: u32::from(record.delivery_count).max(1),
    }
}
