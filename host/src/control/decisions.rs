//! Canary verdicts, in the compacted control topic `<prefix>.decisions`: one record per canary
//! deploy, keyed `<tenant>/<pipeline>/<generation>`, written once by the member that leads the
//! fleet (see [`Leadership`](super::Leadership)) and read by every member, `ackbar deploy` and
//! `ackbar status`.
//!
//! The platform's members write it, tenants only read it. A decision can only choose between
//! the two versions its tenant's deploy record names: a member applies one only when both
//! digests match the record.

use super::topic::ControlTopic;
use crate::canary::{Rates, Tally, Verdict};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The decisions topic under the control plane's `prefix`.
pub fn decisions_topic(prefix: &str) -> String {
    format!("{prefix}.decisions")
}

/// A canary's verdict, with the two sides' counts and rates it compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The deploy's tenant.
    pub tenant: String,
    /// Its pipeline.
    pub pipeline: String,
    /// The canary deploy's generation.
    pub generation: u64,
    /// The canary's plugin digest.
    pub canary: String,
    /// The version it ran beside.
    pub stable: String,
    /// The canary deploy's `started_ms`: with the generation and the two digests, what tells
    /// this canary from another one of the same generation (a pipeline deployed again after
    /// `undeploy` starts its generations over).
    pub started_ms: u64,
    /// Promote or roll back.
    pub verdict: Verdict,
    /// The comparison in words.
    pub reason: String,
    /// The canary's deliveries over the fleet, from its start to the decision.
    pub canary_tally: Tally,
    /// The stable version's deliveries over the fleet, over the same window.
    pub stable_tally: Tally,
    /// The canary's failure rates.
    pub canary_rates: Rates,
    /// The stable version's failure rates.
    pub stable_rates: Rates,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub decided_ms: u64,
    /// The member that took it.
    pub by: String,
}

impl Decision {
    /// Whether this is the decision on `desired`'s canary.
    pub fn decides(&self, desired: &super::DesiredPipeline) -> bool {
        desired.canary.as_ref().is_some_and(|canary| {
            self.generation == desired.generation
                && self.canary == canary.plugin.as_str()
                && self.stable == desired.plugin.as_str()
                && self.started_ms == canary.started_ms
        })
    }

    fn key(&self) -> String {
        key(&self.tenant, &self.pipeline, self.generation)
    }
}

fn key(tenant: &str, pipeline: &str, generation: u64) -> String {
    format!("{tenant}/{pipeline}/{generation}")
}

/// The decisions topic.
#[derive(Debug, Clone)]
pub struct Decisions {
    topic: ControlTopic,
}

impl Decisions {
    /// The topic `topic`, reached with the librdkafka `properties`.
    pub fn new(topic: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        Decisions {
            topic: ControlTopic::new(topic, properties),
        }
    }

    /// Creates the topic (compacted, one partition) unless it exists.
    pub async fn ensure_topic(&self) -> Result<()> {
        self.topic.ensure().await
    }

    /// Records `decision`.
    pub async fn publish(&self, decision: &Decision) -> Result<()> {
        let value = serde_json::to_vec(decision).expect("a decision serializes");
        self.topic
            .write(&[(decision.key().as_str(), Some(value.as_slice()))])
            .await
    }

    /// Every decision, by key. Blocking.
    pub fn read(&self) -> Result<DecisionLog> {
        let mut log = DecisionLog::default();
        self.topic.read(|key, value| {
            log.insert(self.topic.name(), key, value);
            Ok(())
        })?;
        Ok(log)
    }

    /// Reads every decision, then follows the topic. Blocking.
    pub fn follow(&self) -> Result<DecisionsFollower> {
        let mut log = DecisionLog::default();
        let name = self.topic.name().to_string();
        let follower = self.topic.follow(|key, value| {
            log.insert(&name, key, value);
            Ok(())
        })?;
        Ok(DecisionsFollower {
            topic: name,
            follower,
            log,
        })
    }
}

/// Decisions read so far.
#[derive(Debug, Clone, Default)]
pub struct DecisionLog {
    by_key: BTreeMap<String, Decision>,
}

impl DecisionLog {
    fn insert(&mut self, topic: &str, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            self.by_key.remove(key);
            return;
        };
        match serde_json::from_slice::<Decision>(value) {
            Ok(decision) if decision.key() == key => {
                self.by_key.insert(key.to_string(), decision);
            }
            Ok(_) => tracing::warn!("{topic}: decision {key}: its key does not match its content"),
            Err(e) => tracing::warn!("{topic}: decision {key}: unreadable: {e}"),
        }
    }

    /// The decision on `tenant`'s `pipeline` deploy `generation`, if one was taken.
    pub fn get(&self, tenant: &str, pipeline: &str, generation: u64) -> Option<&Decision> {
        self.by_key.get(&key(tenant, pipeline, generation))
    }

    /// Every decision, oldest generation of each pipeline first.
    pub fn all(&self) -> impl Iterator<Item = &Decision> {
        self.by_key.values()
    }
}

/// The decisions topic, followed.
pub struct DecisionsFollower {
    topic: String,
    follower: super::topic::Follower,
    log: DecisionLog,
}

impl DecisionsFollower {
    /// Takes what arrived, waiting up to `wait` for the first record; whether anything did.
    /// Blocking.
    pub fn update(&mut self, wait: Duration) -> Result<bool> {
        let mut new = false;
        let (log, topic) = (&mut self.log, &self.topic);
        self.follower.next(wait, |key, value| {
            log.insert(topic, key, value);
            new = true;
            Ok(())
        })?;
        Ok(new)
    }

    /// A decision this member wrote: known before it is read back, so it is never taken twice.
    pub fn remember(&mut self, decision: Decision) {
        self.log.by_key.insert(decision.key(), decision);
    }

    /// Every decision read so far.
    pub fn log(&self) -> &DecisionLog {
        &self.log
    }
}
