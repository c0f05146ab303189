//! A compacted, single-partition control topic: created once, written in order by an idempotent
//! producer, read from its start to its end. Every control record lives in one.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureRecord, Producer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A control topic reader's client context: librdkafka's own logs and errors go to debug.
/// The reader is dropped as soon as it reached the end, often while librdkafka still
/// connects to its (unused) group's coordinator, which it then reports as a failure; what
/// matters to the reader surfaces through its reads.
struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, "control reader: {fac}: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "control reader: {error}: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// How long one request to the broker may take, and reading may go without a record.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a topic that should exist may be unknown: long enough for a client's metadata to
/// catch up with a topic created a moment ago by another process.
const EXISTING: Duration = Duration::from_secs(5);

/// One control topic and the client settings to reach it.
#[derive(Debug, Clone)]
pub(crate) struct ControlTopic {
    name: String,
    /// librdkafka properties of every client (`bootstrap.servers`, credentials).
    properties: BTreeMap<String, String>,
}

impl ControlTopic {
    pub(crate) fn new(name: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        ControlTopic {
            name: name.into(),
            properties,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Creates the topic (compacted, one partition, the broker's replication) unless it exists,
    /// and refuses one that exists otherwise: under the default delete policy its records
    /// would vanish with retention, and records spread over partitions lose their order.
    pub(crate) async fn ensure(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .context("creating an admin client")?;
        let topic = NewTopic::new(&self.name, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let results = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            )
            .await
            .with_context(|| format!("creating the control topic {}", self.name))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating the control topic {name}: {code}"),
            }
        }
        // A created topic reaches the brokers' metadata a moment later; until it has, readers
        // and writers would be told it does not exist.
        let topic = self.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            topic.watermarks(TIMEOUT)?;
            topic.partitions()
        })
        .await
        .context("the control topic's metadata thread")??;
        let described = admin
            .describe_configs(
                &[ResourceSpecifier::Topic(&self.name)],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            )
            .await
            .with_context(|| format!("reading the settings of control topic {}", self.name))?;
        let policy = match described.into_iter().next() {
            Some(Ok(resource)) => resource
                .entries
                .iter()
                .find(|e| e.name == "cleanup.policy")
                .and_then(|e| e.value.clone())
                .unwrap_or_default(),
            Some(Err(code)) => bail!(
                "reading the settings of control topic {}: {code}",
                self.name
            ),
            None => bail!(
                "reading the settings of control topic {}: no answer",
                self.name
            ),
        };
        if partitions != 1 || !policy.split(',').any(|p| p.trim() == "compact") {
            bail!(
                "control topic {} exists with {partitions} partitions and cleanup.policy={policy}; \
                 a control topic needs 1 partition and cleanup.policy=compact (delete it and let \
                 Ackbar create it, or create it so)",
                self.name
            );
        }
        Ok(())
    }

    /// How many partitions the topic has. Blocking.
    fn partitions(&self) -> Result<usize> {
        let producer = super::clients::producer(&self.properties)?;
        let client = producer.client();
        let metadata = client
            .fetch_metadata(Some(&self.name), TIMEOUT)
            .with_context(|| format!("reading the metadata of control topic {}", self.name))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.name)
            .map_or(0, |t| t.partitions().len()))
    }

    /// The partition's low and high watermarks, waiting up to `patience` for a topic that the
    /// broker (or this client's metadata) does not know yet: one just created. Blocking.
    fn watermarks(&self, patience: Duration) -> Result<(i64, i64)> {
        let producer = super::clients::producer(&self.properties)?;
        let client = producer.client();
        let started = Instant::now();
        loop {
            match client.fetch_watermarks(&self.name, 0, TIMEOUT) {
                Ok(marks) => return Ok(marks),
                Err(KafkaError::MetadataFetch(
                    code @ (RDKafkaErrorCode::UnknownPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::NotLeaderForPartition),
                )) => {
                    // A topic the credentials may not see looks like one that does not exist;
                    // its metadata says which.
                    self.refuse_unauthorized(client)?;
                    if started.elapsed() >= patience {
                        bail!(
                            "control topic {} is not there ({code}): members create it when \
                             they start; is one running with this prefix and tenant?",
                            self.name
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading the control topic {}", self.name))
                }
            }
        }
    }

    /// Fails with the broker's word when it does not authorize these credentials for the
    /// topic. Blocking.
    fn refuse_unauthorized<C: rdkafka::ClientContext>(
        &self,
        client: &rdkafka::client::Client<C>,
    ) -> Result<()> {
        let Ok(metadata) = client.fetch_metadata(Some(&self.name), TIMEOUT) else {
            return Ok(());
        };
        let error = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.name)
            .and_then(|t| t.error())
            .map(RDKafkaErrorCode::from);
        if error == Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
            bail!(
                "the broker refuses access to control topic {}: {} (an ACL must allow these \
                 credentials' principal)",
                self.name,
                RDKafkaErrorCode::TopicAuthorizationFailed
            );
        }
        Ok(())
    }

    /// Writes `records` (key, value; `None` deletes the key) in order and waits until the broker
    /// has them all.
    pub(crate) async fn write(&self, records: &[(&str, Option<&[u8]>)]) -> Result<()> {
        let producer = super::clients::producer(&self.properties)?;
        let mut deliveries = Vec::with_capacity(records.len());
        for &(key, value) in records {
            let mut record = FutureRecord::<str, [u8]>::to(&self.name)
                .partition(0)
                .key(key);
            if let Some(value) = value {
                record = record.payload(value);
            }
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| anyhow!("writing {key} to {}: {e}", self.name))?;
            deliveries.push((key, delivery));
        }
        for (key, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("writing {key} to {}: {e}", self.name),
                Err(_) => bail!("writing {key} to {}: the producer dropped it", self.name),
            }
        }
        Ok(())
    }

    /// Reads the topic from its start to its end and hands each record (key, value; `None` for
    /// a deletion) to `record`, oldest first: the newest record of a key is the one that counts.
    /// Records without a text key are skipped. Blocking: run it off the async workers.
    pub(crate) fn read(&self, record: impl FnMut(&str, Option<&[u8]>) -> Result<()>) -> Result<()> {
        self.follow(record).map(drop)
    }

    /// [`read`](Self::read), then stays at the end: the [`Follower`] hands over what is written
    /// after. Blocking.
    pub(crate) fn follow(
        &self,
        mut record: impl FnMut(&str, Option<&[u8]>) -> Result<()>,
    ) -> Result<Follower> {
        let consumer: BaseConsumer<ReaderContext> = self
            .client_config()
            .set("enable.auto.commit", "false")
            // librdkafka assigns partitions only in a group; this one never joins nor commits,
            // but finding its coordinator needs Describe on it: `<topic>.reader` falls under a
            // tenant's prefixed ACL on `<prefix>.<tenant>.`.
            .set("group.id", format!("{}.reader", self.name))
            // The end is where the partition ends, whether or not a record is left there
            // (compaction removes tombstones and may leave empty batches at the tail).
            .set("enable.partition.eof", "true")
            // Compaction or retention may have moved the start since the watermarks were read.
            .set("auto.offset.reset", "earliest")
            .create_with_context(ReaderContext)
            .context("creating a control topic reader")?;
        let (low, high) = self.watermarks(EXISTING)?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.name, 0, Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        let mut next = low;
        let mut last_progress = Instant::now();
        let mut last_error = None;
        while next < high {
            if last_progress.elapsed() > TIMEOUT {
                let why = last_error.map_or("no record".to_string(), |e: KafkaError| e.to_string());
                bail!(
                    "reading the control topic {}: {why} for {} s at offset {next} of {high}",
                    self.name,
                    TIMEOUT.as_secs()
                );
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                // librdkafka retries what it can; the timeout above ends a failure that lasts.
                Some(Err(e)) => last_error = Some(e),
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    last_progress = Instant::now();
                    if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        record(key, m.payload())?;
                    }
                }
            }
        }
        Ok(Follower { consumer })
    }
}

/// A reader at the end of a control topic, for one who waits for what is written next.
pub(crate) struct Follower {
    consumer: BaseConsumer<ReaderContext>,
}

impl Follower {
    /// Hands the records written since the last call to `record`, waiting up to `wait` for the
    /// first. A fault is left to librdkafka, which retries; the caller calls again. Blocking.
    pub(crate) fn next(
        &self,
        wait: Duration,
        mut record: impl FnMut(&str, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut timeout = wait;
        loop {
            match self.consumer.poll(timeout) {
                None | Some(Err(_)) => return Ok(()),
                Some(Ok(m)) => {
                    if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        record(key, m.payload())?;
                    }
                    timeout = Duration::ZERO;
                }
            }
        }
    }
}
