//! A validated pipeline: what it consumes, which plugin handles it, and how deliveries settle.

use super::raw::{
    default_commit_interval_ms, default_connect_timeout_ms, default_dead_letter_timeout_ms,
    default_drain_timeout_ms, default_output_timeout_ms, DEFAULT_MAX_BATCH,
};
use super::TenantLimits;
use crate::outputs::OutputRules;
use crate::plugin::{Grants, PluginLimits, DEFAULT_TENANT};
use crate::policy::{AckPolicy, Backoff};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which messages of a partition keep their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// One message at a time, in offset order (Kafka's usual guarantee).
    #[default]
    Partition,
    /// Messages with the same key in offset order; different keys concurrently. Messages
    /// without a key are ordered among themselves.
    Key,
    /// Any message concurrently with any other.
    Unordered,
}

/// The protocol a consumer group's members speak with the broker's group coordinator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol: the members rebalance together (JoinGroup/SyncGroup), one of
    /// them computes the assignment. Every Kafka broker speaks it.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+): the broker computes the assignment and hands it out through
    /// heartbeats, partition by partition; a member joining or leaving stops no other member.
    /// Session and heartbeat timing are the broker's (`group.consumer.*`).
    Consumer,
}

impl GroupProtocol {
    /// The name in configs, logs and librdkafka's `group.protocol`.
    pub fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// librdkafka properties the consumer protocol does not take, and what replaces each.
pub(crate) const CLASSIC_ONLY_PROPERTIES: [(&str, &str); 4] = [
    (
        "session.timeout.ms",
        "the broker's `group.consumer.session.timeout.ms` sets it",
    ),
    (
        "heartbeat.interval.ms",
        "the broker's `group.consumer.heartbeat.interval.ms` sets it",
    ),
    (
        "partition.assignment.strategy",
        "the broker assigns; `group.remote.assignor` names its assignor (uniform or range)",
    ),
    ("group.protocol.type", "the consumer protocol has none"),
];

/// The kind of Kafka group a pipeline consumes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupType {
    /// A consumer group: each partition has one owner, which handles it in order and commits
    /// offsets; a nacked message holds its partition until it settles.
    #[default]
    Classic,
    /// A share group (KIP-932, Kafka 4.2+): any number of members read one partition, each
    /// record is acquired under a lock and acknowledged on its own (accept, release, reject);
    /// the broker counts deliveries and archives a record past its delivery limit.
    Share,
}

impl GroupType {
    /// The name in configs and logs: `classic` or `share`.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
            GroupType::Share => "share",
        }
    }
}

/// `max_attempts` of a share pipeline with a dead-letter topic that names none: Kafka's default
/// `group.share.delivery.count.limit`, so the last delivery the broker allows is dead-lettered
/// instead of archived.
pub const DEFAULT_SHARE_MAX_ATTEMPTS: u32 = 5;

/// What a pipeline promises about its outputs and its input offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    /// Outputs and dead letters are written (idempotent producer, `acks=all`) and acknowledged by
    /// the broker before the input offset may be committed; a crash may write them again.
    #[default]
    AtLeastOnce,
    /// Kafka transactions: the outputs, dead letters and input offsets of settled messages
    /// commit together or not at all (readers use `isolation.level=read_committed`).
    ExactlyOnce,
}

impl DeliveryGuarantee {
    /// The name in configs and logs: `at-least-once` or `exactly-once`.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
            DeliveryGuarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// How an exactly-once pipeline groups settled messages of a partition into transactions: a
/// transaction commits once it holds `max_messages` messages or is `max_age` old, whichever
/// comes first, and before its partition is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSizing {
    /// Settled messages per transaction, at most (default `DEFAULT_TRANSACTION_MESSAGES`).
    pub max_messages: usize,
    /// Longest a transaction stays open (default `DEFAULT_TRANSACTION_MS` ms): also how long a
    /// `read_committed` reader waits, at most, for an output.
    pub max_age: Duration,
    /// The transactional id of input partition P of topic T is `{id_prefix}.T.P`; default
    /// `ackbar.{group_id}`. One id per input partition: whoever owns the partition next fences
    /// the previous owner when it starts, and aborts what that owner left open.
    pub id_prefix: String,
}

/// Default `[pipeline.transaction] max_messages`.
pub const DEFAULT_TRANSACTION_MESSAGES: usize = 500;

/// Default `[pipeline.transaction] max_ms`.
pub const DEFAULT_TRANSACTION_MS: u64 = 100;

/// `max_in_flight` when `ordering` allows concurrency and the config names none.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Highest `max_batch` accepted.
pub const MAX_BATCH_LIMIT: usize = 1024;

/// A canary's plugin and the partitions it runs on, beside the pipeline's `plugin`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryPlugin {
    /// The canary's component.
    pub path: PathBuf,
    /// Partition `p` runs it when `p % every == 0` (see [`crate::canary::every_nth`]).
    pub every: u32,
}

/// One validated pipeline: topics → group → plugin → policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Unique among the config's pipelines; names the pipeline in logs, metrics, errors and dead
    /// letters.
    pub name: String,
    /// The team the pipeline belongs to: a label on its logs and metrics.
    pub tenant: String,
    /// The topics consumed, at least one. A topic another tenant owns must be shared with this
    /// pipeline's tenant.
    pub topics: Vec<String>,
    /// A consumer group (the default) or a share group.
    pub group_type: GroupType,
    /// The consumer group's protocol (a consumer group's only).
    pub group_protocol: GroupProtocol,
    /// The member's static identity in its consumer group (KIP-345), expanded from the
    /// `group_instance_id` template: a member that restarts within the session timeout gets its
    /// partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    /// The consumer group offsets are committed to (the share group, for `group_type = "share"`). `None` only under `ACK_FIRST`: the pipeline
    /// then assigns itself every partition of its topics instead of joining a group, and nothing is
    /// committed.
    pub group_id: Option<String>,
    /// How handler outcomes become commits, redeliveries and dead letters.
    pub ack_policy: AckPolicy,
    /// Absolute, or relative to the working directory (resolved against the config file's folder).
    pub plugin: PathBuf,
    /// Reload the plugin when its file changes.
    pub watch_plugin: bool,
    /// A canary deploy's version on some partitions: set by a fleet member, never by the file.
    pub canary: Option<CanaryPlugin>,
    /// Which messages of a partition must be handled one after the other.
    pub ordering: Ordering,
    /// Messages of one partition handled at the same time (`ordering` other than `partition`).
    pub max_in_flight: usize,
    /// Most messages of a partition one call takes, when the plugin exports `handle-batch`
    /// (`ordering = "partition"`); 1 calls `handle` once per message.
    pub max_batch: usize,
    /// A payload each new plugin version is called with before it goes live; a trap refuses it.
    pub smoke_payload: Option<Vec<u8>>,
    /// How often settled offsets are committed, in one request (librdkafka's auto-commit interval
    /// under `ACK_FIRST`). Greater than zero; default 1 s.
    pub commit_interval: Duration,
    /// How long in-flight messages may take to finish when a partition is revoked or the pipeline
    /// stops. One that does not finish in time stays uncommitted and is read again. Default 10 s.
    pub drain_timeout: Duration,
    /// How long startup waits for the cluster to answer before failing.
    pub connect_timeout: Duration,
    /// Per-call limits: the pipeline's own, else its tenant's, else the defaults. Never looser
    /// than the tenant's.
    pub limits: PluginLimits,
    /// The wait before a nacked message is delivered again.
    pub backoff: Backoff,
    /// Deliveries of one message before it counts as exhausted (dead-lettered, or the partition
    /// pauses when there is no dead-letter topic). `None`: redelivered until it succeeds.
    pub max_attempts: Option<u32>,
    /// Rejected and exhausted messages are written here before their offset is committed.
    pub dead_letter_topic: Option<String>,
    /// How long one dead-letter write may take before it is retried.
    pub dead_letter_timeout: Duration,
    /// The topics the handler may send to, and the per-call bounds on what it sends.
    pub outputs: OutputRules,
    /// At-least-once or exactly-once for outputs, dead letters and offsets.
    pub delivery: DeliveryGuarantee,
    /// How long one write of an attempt's outputs may take before it is retried (at least once).
    pub output_timeout: Duration,
    /// How transactions are sized (exactly once).
    pub transactions: TransactionSizing,
    /// librdkafka properties for this pipeline: the global `[kafka]` table with this pipeline's
    /// `[pipeline.kafka]` overrides applied.
    pub kafka: BTreeMap<String, String>,
    /// What the tenant's guests may reach (files, environment, HTTP hosts).
    pub grants: Arc<Grants>,
    /// The tenant's shared limits; pipelines of one tenant share one budget at run time.
    pub tenant_limits: TenantLimits,
}

impl PipelineConfig {
    /// A pipeline with defaults for everything but what must be given.
    pub fn new(name: &str, topics: &[&str], plugin: impl Into<PathBuf>) -> Self {
        PipelineConfig {
            name: name.to_string(),
            tenant: DEFAULT_TENANT.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group_type: GroupType::Classic,
            group_protocol: GroupProtocol::Classic,
            group_instance_id: None,
            group_id: None,
            ack_policy: AckPolicy::default(),
            plugin: plugin.into(),
            watch_plugin: true,
            canary: None,
            ordering: Ordering::Partition,
            max_in_flight: 1,
            max_batch: DEFAULT_MAX_BATCH,
            smoke_payload: None,
            commit_interval: Duration::from_millis(default_commit_interval_ms()),
            drain_timeout: Duration::from_millis(default_drain_timeout_ms()),
            connect_timeout: Duration::from_millis(default_connect_timeout_ms()),
            limits: PluginLimits::default(),
            backoff: Backoff::default(),
            max_attempts: None,
            dead_letter_topic: None,
            dead_letter_timeout: Duration::from_millis(default_dead_letter_timeout_ms()),
            outputs: OutputRules::default(),
            delivery: DeliveryGuarantee::AtLeastOnce,
            output_timeout: Duration::from_millis(default_output_timeout_ms()),
            transactions: TransactionSizing {
                max_messages: DEFAULT_TRANSACTION_MESSAGES,
                max_age: Duration::from_millis(DEFAULT_TRANSACTION_MS),
                id_prefix: format!("ackbar.{name}"),
            },
            kafka: BTreeMap::new(),
            grants: Arc::default(),
            tenant_limits: TenantLimits::default(),
        }
    }
}
