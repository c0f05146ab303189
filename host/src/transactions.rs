//! Exactly-once pipelines: the settled messages of one input partition are committed in Kafka
//! transactions that hold their outputs, their dead letters and the partition's input offset,
//! so a `read_committed` reader sees all of an attempt's effects or none.
//!
//! **Fencing.** Each input partition has its own transactional id, `{id_prefix}.{topic}.{partition}`,
//! and its own producer. Whoever owns the partition next — another member after a rebalance, or
//! this process restarted after a crash — calls `init_transactions` with the same id before it
//! handles a message: the broker then fences the previous owner's producer (its next call fails)
//! and aborts whatever transaction it left open, at once rather than after a transaction timeout.
//! The offsets also travel with the consumer's group metadata (KIP-447), so a commit from an
//! old group generation is refused too. The consumer reads with `isolation.level=read_committed`,
//! which makes its fetch of committed offsets wait for a pending transactional commit, so a new
//! owner starts exactly where the last committed transaction ended.
//!
//! **Failure.** A transaction that cannot commit is aborted and the worker rewinds its partition
//! to the transaction's first message: those messages are delivered again, and nothing after them
//! has been handled. A fenced or otherwise fatal producer means this member no longer owns the
//! partition: the pipeline restarts.
//!
//! Every rdkafka transaction call blocks (up to `output_timeout`), so each runs on a blocking
//! thread, never on an async worker.

use crate::config::PipelineConfig;
use crate::offsets::TopicPartition;
use crate::output_writer::producer_config;
use anyhow::{anyhow, Context, Result};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The open transaction of a partition.
#[derive(Debug)]
struct Open {
    started: Instant,
    /// The first message in it: where to rewind to if it aborts.
    first_offset: i64,
    /// One past the last settled message: the offset it commits.
    next_offset: i64,
    messages: usize,
    /// Records staged per topic: counted as written once the transaction commits.
    records: BTreeMap<String, (u64, u64)>,
    /// A record the producer refused to queue: the transaction must abort.
    failed: Option<String>,
}

/// How a commit went.
#[derive(Debug)]
pub enum CommitError {
    /// Aborted: nothing of it is visible; deliver again from `rewind_to`.
    Aborted {
        /// The first input offset of the aborted transaction.
        rewind_to: i64,
        /// Why.
        reason: String,
    },
    /// The producer cannot go on (fenced by a newer owner of the partition, or another fatal
    /// error); this member must not handle the partition any more.
    Fatal(String),
}

/// What one commit covered, for metrics.
#[derive(Debug)]
pub struct Committed {
    /// Input messages settled by it.
    pub messages: usize,
    /// Records written per topic: (records, bytes).
    pub records: BTreeMap<String, (u64, u64)>,
    /// How long the commit calls took.
    pub took: Duration,
}

/// One input partition's transactional producer and its open transaction.
pub struct PartitionTransactions {
    producer: FutureProducer,
    id: String,
    tp: TopicPartition,
    timeout: Duration,
    max_messages: usize,
    max_age: Duration,
    open: Mutex<Option<Open>>,
}

impl PartitionTransactions {
    /// Creates the producer of `tp` and fences any previous owner of its transactional id
    /// (aborting what that owner left open). Blocks up to `output_timeout`.
    pub async fn start(
        config: &PipelineConfig,
        bootstrap: &str,
        tp: &TopicPartition,
    ) -> Result<Self> {
        let id = format!(
            "{}.{}.{}",
            config.transactions.id_prefix, tp.topic, tp.partition
        );
        let mut client = producer_config(config, bootstrap, config.output_timeout);
        client.set("transactional.id", &id).set(
            "transaction.timeout.ms",
            transaction_timeout(config.output_timeout, config.transactions.max_age)
                .as_millis()
                .to_string(),
        );
        let producer: FutureProducer = client
            .create()
            .with_context(|| format!("creating the transactional producer {id}"))?;
        let timeout = config.output_timeout;
        let init = producer.clone();
        tokio::task::spawn_blocking(move || init.init_transactions(timeout))
            .await
            .context("init_transactions panicked")?
            .with_context(|| format!("initialising transactions of {id}"))?;
        Ok(PartitionTransactions {
            producer,
            id,
            tp: tp.clone(),
            timeout,
            max_messages: config.transactions.max_messages,
            max_age: config.transactions.max_age,
            open: Mutex::new(None),
        })
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn with_open<T>(&self, offset: i64, f: impl FnOnce(&mut Open) -> T) -> Result<T> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| anyhow!("{}: beginning a transaction: {e}", self.id))?;
            *open = Some(Open {
                started: Instant::now(),
                first_offset: offset,
                next_offset: offset,
                messages: 0,
                records: BTreeMap::new(),
                failed: None,
            });
        }
        Ok(f(open.as_mut().expect("opened above")))
    }

    /// Adds a record (an output, a dead letter) of the message at `offset` to the open
    /// transaction, opening one if needed. A record the producer cannot queue makes the
    /// transaction abort at its commit.
    pub fn stage(&self, offset: i64, record: FutureRecord<'_, [u8], [u8]>) {
        let topic = record.topic;
        let bytes = record.payload.map_or(0, <[u8]>::len) + record.key.map_or(0, <[u8]>::len);
        let producer = &self.producer;
        let staged = self.with_open(offset, |open| {
            // The delivery future is not awaited: the commit flushes, and fails if a record did.
            match producer.send_result(record) {
                Ok(_) => {
                    // No topic name allocated per record: one per topic per transaction.
                    if !open.records.contains_key(topic) {
                        open.records.insert(topic.to_string(), (0, 0));
                    }
                    let tally = open.records.get_mut(topic).expect("inserted above");
                    tally.0 += 1;
                    tally.1 += bytes as u64;
                }
                Err((e, _)) => {
                    open.failed
                        .get_or_insert_with(|| format!("queueing a record to {topic}: {e}"));
                }
            }
        });
        if let Err(e) = staged {
            tracing::warn!(partition = %self.tp, "{e:#}");
        }
    }

    /// The message at `offset` is settled: the open transaction commits past it.
    pub fn settled(&self, offset: i64) {
        let noted = self.with_open(offset, |open| {
            open.messages += 1;
            open.next_offset = offset + 1;
        });
        if let Err(e) = noted {
            tracing::warn!(partition = %self.tp, "{e:#}");
        }
    }

    /// Whether the open transaction holds `max_messages` messages or is `max_age` old.
    pub fn full(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.as_ref()
            .is_some_and(|o| o.messages >= self.max_messages || o.started.elapsed() >= self.max_age)
    }

    /// When the open transaction is due by age; `None` without one.
    pub fn due_at(&self) -> Option<Instant> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.as_ref().map(|o| o.started + self.max_age)
    }

    /// Commits the open transaction with the partition's offset, or aborts it. `Ok(None)` when
    /// nothing was open. `group` is the consumer's current group metadata.
    pub async fn commit(
        &self,
        group: Option<ConsumerGroupMetadata>,
    ) -> Result<Option<Committed>, CommitError> {
        let Some(open) = self.open.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(None);
        };
        let rewind_to = open.first_offset;
        let started = Instant::now();
        let producer = self.producer.clone();
        let (tp, timeout, id) = (self.tp.clone(), self.timeout, self.id.clone());
        let failed = open.failed.clone();
        let next_offset = open.next_offset;
        let has_settled = open.messages > 0;
        let result = tokio::task::spawn_blocking(move || {
            if let Some(failed) = failed {
                return abort(&producer, timeout, rewind_to, failed);
            }
            if has_settled {
                let Some(group) = group else {
                    let reason = "the consumer has no group metadata".to_string();
                    return abort(&producer, timeout, rewind_to, reason);
                };
                let mut offsets = TopicPartitionList::new();
                offsets
                    .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next_offset))
                    .map_err(|e| CommitError::Fatal(format!("{id}: offset {next_offset}: {e}")))?;
                if let Err(e) = producer.send_offsets_to_transaction(&offsets, &group, timeout) {
                    return settle_error(&producer, timeout, rewind_to, e, "sending the offsets");
                }
            }
            loop {
                match producer.commit_transaction(timeout) {
                    Ok(()) => return Ok(()),
                    Err(e) if is_retriable(&e) => continue,
                    Err(e) => return settle_error(&producer, timeout, rewind_to, e, "committing"),
                }
            }
        })
        .await
        .unwrap_or_else(|e| Err(CommitError::Fatal(format!("the commit thread failed: {e}"))));
        result.map(|()| {
            Some(Committed {
                messages: open.messages,
                records: open.records,
                took: started.elapsed(),
            })
        })
    }
}

/// The broker aborts a transaction left open this long: room for the longest a commit may wait
/// (`output_timeout`) on top of the time it stays open.
fn transaction_timeout(output_timeout: Duration, max_age: Duration) -> Duration {
    (output_timeout * 2 + max_age).max(Duration::from_secs(10))
}

fn is_retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_retriable())
}

/// Aborts the open transaction, whose first message is at `rewind_to`.
fn abort(
    producer: &FutureProducer,
    timeout: Duration,
    rewind_to: i64,
    reason: String,
) -> Result<(), CommitError> {
    match producer.abort_transaction(timeout) {
        Ok(()) => Err(CommitError::Aborted { rewind_to, reason }),
        Err(e) => Err(CommitError::Fatal(format!(
            "{reason}; aborting the transaction failed too: {e}"
        ))),
    }
}

fn settle_error(
    producer: &FutureProducer,
    timeout: Duration,
    rewind_to: i64,
    e: KafkaError,
    doing: &str,
) -> Result<(), CommitError> {
    match &e {
        KafkaError::Transaction(t) if t.txn_requires_abort() => {
            abort(producer, timeout, rewind_to, format!("{doing}: {e}"))
        }
        _ => Err(CommitError::Fatal(format!("{doing}: {e}"))),
    }
}
