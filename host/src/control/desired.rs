//! The desired state of a tenant's deployed pipelines: one compacted control topic per tenant
//! ([`pipelines_topic`]), so Kafka ACLs can let each tenant write its own and no other's.
//!
//! Key: the pipeline's name. Value (JSON): the plugin's digest in the plugin store, the
//! pipeline's `[[tenant.pipeline]]` table as TOML (without `name` and `plugin`), and a generation that
//! grows with each deploy of that pipeline. A deletion (a record without a value) removes the
//! pipeline. A member checks each one with
//! [`Config::deployed_pipeline`](crate::config::Config::deployed_pipeline) before it runs it.

use super::plugin_store::PluginDigest;
use super::topic::ControlTopic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The control topic holding `tenant`'s deployed pipelines, under the control plane's `prefix`.
/// A tenant name goes into a topic name, and an ACL on the prefix `<prefix>.<tenant>.` must
/// cover that tenant's topics and no other's: letters, digits, `_` and `-` only.
pub fn pipelines_topic(prefix: &str, tenant: &str) -> Result<String> {
    tenant_topic(prefix, tenant, "pipelines")
}

/// The control topic holding the components `tenant` deployed (its plugin store): a tenant's
/// own, so no other tenant can overwrite its chunks.
pub fn plugins_topic(prefix: &str, tenant: &str) -> Result<String> {
    tenant_topic(prefix, tenant, "plugins")
}

fn tenant_topic(prefix: &str, tenant: &str, kind: &str) -> Result<String> {
    let fits = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !fits(tenant) {
        anyhow::bail!(
            "tenant {tenant:?} cannot name a control topic: use letters, digits, '_' and '-' only"
        );
    }
    let topic = format!("{prefix}.{tenant}.{kind}");
    if topic.len() > 249 {
        anyhow::bail!("control topic {topic} is longer than Kafka's 249 characters");
    }
    Ok(topic)
}

/// One deployed pipeline, as its tenant wants it to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPipeline {
    /// The pipeline's name, unique among the member's pipelines.
    pub pipeline: String,
    /// The component that handles it.
    pub plugin: PluginDigest,
    /// Where members fetch `plugin` from: an `oci://` reference pinned to its manifest's
    /// digest; `None` for the tenant's plugin store.
    pub source: Option<String>,
    /// Its `[[tenant.pipeline]]` table as TOML, without `name` and `plugin`.
    pub spec: String,
    /// 1 for the first deploy of the pipeline, one more for each deploy after it.
    pub generation: u64,
    /// The deploys before this one, newest first, at most [`HISTORY`]: what a rollback
    /// returns to.
    pub history: Vec<PastDeploy>,
    /// A canary deploy: `plugin` keeps running, this version runs beside it on some
    /// partitions until the fleet's decision.
    pub canary: Option<CanaryDeploy>,
}

/// A new version tried on a share of a pipeline's partitions before it runs everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryDeploy {
    /// The new version.
    pub plugin: PluginDigest,
    /// Where it is fetched from, as [`DesiredPipeline::source`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The share of partitions it runs on, in percent (see [`crate::canary::every_nth`]).
    pub percent: u32,
    /// Deliveries on the canary after which the decision is taken.
    pub messages: u64,
    /// Milliseconds after `started_ms` when the decision is taken with fewer deliveries.
    pub max_ms: u64,
    /// When the deploy was written, in milliseconds since the Unix epoch.
    pub started_ms: u64,
}

/// The versions a member runs for one deploy, once its decision (if any) is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The version on every partition a canary does not take.
    pub plugin: PluginDigest,
    /// The canary and its partitions (`every_nth`), while it waits for its decision.
    pub canary: Option<(PluginDigest, u32)>,
}

/// Deploys a pipeline's record remembers besides the current one.
pub const HISTORY: usize = 10;

/// A deploy that came before the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastDeploy {
    /// Its generation.
    pub generation: u64,
    /// Its plugin's digest.
    pub plugin: PluginDigest,
    /// Its spec.
    pub spec: String,
    /// Where its plugin is fetched from, as [`DesiredPipeline::source`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl DesiredPipeline {
    /// What runs for this deploy given its `decision` (a canary's, for this generation): the
    /// canary's version everywhere once promoted, the old one everywhere once rolled back,
    /// both until then. A decision naming other versions than this deploy's is ignored.
    pub fn plan(&self, decision: Option<&super::Decision>) -> Plan {
        let Some(canary) = &self.canary else {
            return Plan {
                plugin: self.plugin.clone(),
                canary: None,
            };
        };
        let verdict = decision.filter(|d| d.decides(self)).map(|d| d.verdict);
        match verdict {
            Some(crate::canary::Verdict::Promote) => Plan {
                plugin: canary.plugin.clone(),
                canary: None,
            },
            Some(crate::canary::Verdict::RollBack) => Plan {
                plugin: self.plugin.clone(),
                canary: None,
            },
            None => Plan {
                plugin: self.plugin.clone(),
                canary: Some((
                    canary.plugin.clone(),
                    crate::canary::every_nth(canary.percent),
                )),
            },
        }
    }

    /// Where this deploy's `digest` (its plugin's or its canary's) is fetched from; `None`:
    /// the tenant's plugin store.
    pub fn source_of(&self, digest: &PluginDigest) -> Option<&str> {
        match &self.canary {
            Some(canary) if canary.plugin == *digest => canary.source.as_deref(),
            _ if self.plugin == *digest => self.source.as_deref(),
            _ => None,
        }
    }

    /// The deploy after this one: `plugin` from `source` with `spec`, one generation on, this
    /// one first in its history as `ran` (what it came to run: a canary's version once
    /// promoted).
    pub fn next(
        &self,
        ran: PluginDigest,
        plugin: PluginDigest,
        source: Option<String>,
        spec: String,
    ) -> DesiredPipeline {
        let mut history = vec![PastDeploy {
            generation: self.generation,
            source: self.source_of(&ran).map(str::to_string),
            plugin: ran,
            spec: self.spec.clone(),
        }];
        history.extend(self.history.iter().take(HISTORY - 1).cloned());
        DesiredPipeline {
            pipeline: self.pipeline.clone(),
            plugin,
            source,
            spec,
            generation: self.generation + 1,
            history,
            canary: None,
        }
    }
}

/// A desired pipeline's record value.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    plugin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    spec: String,
    generation: u64,
    #[serde(default)]
    history: Vec<PastDeploy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryDeploy>,
}

/// One tenant's desired pipelines in its control topic.
#[derive(Debug, Clone)]
pub struct DesiredState {
    topic: ControlTopic,
}

impl DesiredState {
    /// The desired state in `topic`, reached with the librdkafka `properties`.
    pub fn new(topic: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        DesiredState {
            topic: ControlTopic::new(topic, properties),
        }
    }

    /// Creates the topic (compacted, one partition) unless it exists.
    pub async fn ensure_topic(&self) -> Result<()> {
        self.topic.ensure().await
    }

    /// Records `desired` as the pipeline's state.
    pub async fn publish(&self, desired: &DesiredPipeline) -> Result<()> {
        let value = serde_json::to_vec(&Record {
            plugin: desired.plugin.to_string(),
            source: desired.source.clone(),
            spec: desired.spec.clone(),
            generation: desired.generation,
            history: desired.history.clone(),
            canary: desired.canary.clone(),
        })
        .expect("a record serializes");
        self.topic
            .write(&[(desired.pipeline.as_str(), Some(value.as_slice()))])
            .await
    }

    /// Removes `pipeline` from the desired state.
    pub async fn remove(&self, pipeline: &str) -> Result<()> {
        self.topic.write(&[(pipeline, None)]).await
    }

    /// Every pipeline the tenant wants now, by name. A record that does not parse is an error
    /// naming the topic and the pipeline. Blocking: run it off the async workers.
    pub fn read(&self) -> Result<BTreeMap<String, DesiredPipeline>> {
        self.read_each()?
            .into_iter()
            .map(|(name, record)| Ok((name, record?)))
            .collect()
    }

    /// Every pipeline the tenant wants now, by name, each record parsed on its own: one that
    /// does not parse is that pipeline's error (naming the topic and the pipeline), not the
    /// tenant's. Blocking: run it off the async workers.
    pub fn read_each(&self) -> Result<BTreeMap<String, Result<DesiredPipeline>>> {
        let mut records: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        self.topic.read(|key, value| {
            records.insert(key.to_string(), value.map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(parse(self.topic.name(), &records))
    }

    /// Reads the desired state once, then follows it: a member learns of a deploy as soon as
    /// its record arrives, without asking the broker on every poll. Blocking.
    pub fn follow(&self) -> Result<DesiredFollower> {
        let mut records: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        let follower = self.topic.follow(|key, value| {
            records.insert(key.to_string(), value.map(<[u8]>::to_vec));
            Ok(())
        })?;
        Ok(DesiredFollower {
            topic: self.topic.name().to_string(),
            follower,
            records,
            fresh: true,
        })
    }
}

/// A tenant's desired state, followed.
pub struct DesiredFollower {
    topic: String,
    follower: super::topic::Follower,
    records: BTreeMap<String, Option<Vec<u8>>>,
    /// Nothing handed out yet.
    fresh: bool,
}

impl DesiredFollower {
    /// Every pipeline the tenant wants now, as [`DesiredState::read_each`] gives them, when
    /// something was written since the last call (or on the first); `None` otherwise. Does not
    /// wait. Blocking.
    pub fn changed(&mut self) -> Result<Option<BTreeMap<String, Result<DesiredPipeline>>>> {
        let mut new = std::mem::take(&mut self.fresh);
        let records = &mut self.records;
        self.follower
            .next(std::time::Duration::ZERO, |key, value| {
                records.insert(key.to_string(), value.map(<[u8]>::to_vec));
                new = true;
                Ok(())
            })?;
        Ok(new.then(|| parse(&self.topic, &self.records)))
    }

    /// Every pipeline the tenant wants now, whether or not something changed.
    pub fn current(&self) -> BTreeMap<String, Result<DesiredPipeline>> {
        parse(&self.topic, &self.records)
    }
}

/// The newest record of each pipeline, parsed one by one.
fn parse(
    topic: &str,
    records: &BTreeMap<String, Option<Vec<u8>>>,
) -> BTreeMap<String, Result<DesiredPipeline>> {
    let mut desired = BTreeMap::new();
    for (pipeline, value) in records {
        let Some(value) = value else { continue };
        let parsed = serde_json::from_slice::<Record>(value)
            .with_context(|| {
                format!("{topic}: pipeline '{pipeline}': the record is not a deployed pipeline")
            })
            .and_then(|record| {
                let plugin = PluginDigest::parse(&record.plugin)
                    .with_context(|| format!("{topic}: pipeline '{pipeline}'"))?;
                Ok(DesiredPipeline {
                    pipeline: pipeline.clone(),
                    plugin,
                    source: record.source,
                    spec: record.spec,
                    generation: record.generation,
                    history: record.history,
                    canary: record.canary,
                })
            });
        desired.insert(pipeline.clone(), parsed);
    }
    desired
}
