//! A fleet member: `ackbar run` with `[control]`. It runs what its tenants deployed beside the
//! pipelines of its file, and says what it runs in the status topic.
//!
//! Reconciling one deploy (a pipeline's record in `<prefix>.<tenant>.pipelines`):
//! 1. the plugin is taken from the local cache, or from the tenant's plugin store and checked
//!    against its digest;
//! 2. the spec is checked against the tenant's bounds in the member's file
//!    ([`Config::deployed_pipeline`]), with the file's errors;
//! 3. a pipeline already running with the same spec swaps the plugin as hot reload does
//!    (compiled and smoke-tested off the hot path; calls in flight finish on the old version);
//!    a new pipeline, or a new spec, is started after the plugin loaded and passed its smoke
//!    test here, so a version that does not load is refused, not restarted forever; a spec
//!    change stops the old pipeline first (its settled offsets committed);
//! 4. a refusal is kept per generation and published in the status, and the version before it
//!    keeps running. A broker that cannot be read is retried on the next poll.
//!
//! A member applies the desired state before any deployed pipeline starts, so one that starts
//! after a crash runs the current versions before it takes partitions.

use super::decisions::{decisions_topic, Decision, Decisions, DecisionsFollower};
use super::desired::{
    pipelines_topic, plugins_topic, DesiredFollower, DesiredPipeline, DesiredState, Plan,
};
use super::leader::Leadership;
use super::plugin_store::{PluginDigest, PluginStore, PluginUnavailable};
use super::status::{
    now_ms, status_topic, CanaryStatus, Deployed, MemberStatus, PipelineStatus, Refusal,
    StatusFollower, StatusTopic,
};
use crate::canary::{self, Tally};
use crate::config::{Backoff, CanaryPlugin, Config, ControlSettings};
use crate::oci::{self, OciReference, PinnedComponent, Registries};
use crate::plugin::PluginRuntime;
use crate::reload::PluginSlot;
use crate::supervisor::{Launch, Supervised};
use crate::tenant::TenantBudget;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What deployed pipelines are started with; see [`Launch`].
pub struct MemberLaunch {
    /// The cluster's `bootstrap.servers`.
    pub bootstrap: String,
    /// The process-wide Wasm runtime.
    pub runtime: PluginRuntime,
    /// Each declared tenant's budget, shared with its pipelines from the file.
    pub budgets: HashMap<String, Arc<TenantBudget>>,
    /// Delays between a pipeline's restarts.
    pub backoff: Backoff,
    /// Where downloaded components are kept, by digest.
    pub plugins_dir: PathBuf,
    /// Whether the control topics exist already: the embedded broker's are created with it
    /// (it cannot describe a topic's settings).
    pub control_topics_exist: bool,
}

/// (tenant, pipeline).
type Key = (String, String);

/// A fleet member's control loop state.
pub struct Member {
    config: Arc<Config>,
    settings: ControlSettings,
    launch: MemberLaunch,
    tenants: Vec<TenantControl>,
    deployed: BTreeMap<Key, Running>,
    /// The newest refused deploy of each pipeline, with its spec (a deploy is its generation,
    /// plugin and spec).
    refused: BTreeMap<Key, (Refusal, String)>,
    /// Deploys that could not be applied yet for a reason that may pass (the broker), with
    /// the reason, logged once per generation.
    waiting: BTreeMap<Key, (u64, String)>,
    status: StatusTopic,
    /// How deployed components are pulled from OCI registries.
    registries: Registries,
    /// Canary verdicts, followed.
    decisions: Decisions,
    decisions_follower: Option<DecisionsFollower>,
    /// Whether this member takes the fleet's decisions; `None` until it joined the group.
    leadership: Option<Leadership>,
    /// The fleet's statuses, followed while this member leads: a verdict sums every member's
    /// counts.
    statuses: Option<StatusFollower>,
    /// When this member, as leader, first saw each undecided canary (tenant, pipeline,
    /// generation), in ms since the epoch.
    canaries_seen: HashMap<(String, String, u64), u64>,
    identity: Identity,
    /// Messages counted at the previous status, for the rate.
    counted: HashMap<Key, (Instant, u64)>,
    /// What each deployed pipeline ran at the previous status (`None`: down), so a pipeline
    /// that started, went down or was assigned other partitions since is published at once.
    published: BTreeMap<Key, Option<Published>>,
}

/// A deployed pipeline as the last status showed it.
#[derive(Debug, PartialEq)]
struct Published {
    plugin_version: String,
    partitions: Vec<crate::offsets::TopicPartition>,
}

struct TenantControl {
    name: String,
    desired: DesiredState,
    store: PluginStore,
    /// The desired state, followed once read (`None` until then, or after a failure).
    follower: Option<DesiredFollower>,
}

struct Running {
    supervised: Arc<Supervised>,
    desired: DesiredPipeline,
    /// The versions it runs for `desired`.
    plan: Plan,
}

struct Identity {
    member: String,
    host: String,
    pid: u32,
    started_ms: u64,
}

/// Why a deploy was not applied.
enum NotApplied {
    /// It never will be: the member refuses this generation.
    Refused(String),
    /// It may be on the next poll.
    Later(anyhow::Error),
}

impl From<crate::config::ConfigError> for NotApplied {
    fn from(e: crate::config::ConfigError) -> Self {
        NotApplied::Refused(e.0)
    }
}

impl Member {
    /// Joins the fleet of `config`'s `[control]`: creates the control topics that do not exist
    /// yet (the status topic and each declared tenant's two). Nothing runs until
    /// [`reconcile`](Self::reconcile).
    pub async fn join(config: Arc<Config>, launch: MemberLaunch) -> Result<Member> {
        let settings = config
            .control
            .clone()
            .context("the config has no [control] section")?;
        let properties = config.control_properties(&launch.bootstrap);
        let status = StatusTopic::new(status_topic(&settings.prefix), properties.clone());
        let decisions = Decisions::new(decisions_topic(&settings.prefix), properties.clone());
        let ensure = !launch.control_topics_exist;
        if ensure {
            status.ensure_topic().await?;
            decisions.ensure_topic().await?;
        }
        let mut tenants = Vec::new();
        for name in config.declared_tenants() {
            let desired =
                DesiredState::new(pipelines_topic(&settings.prefix, name)?, properties.clone());
            let store =
                PluginStore::new(plugins_topic(&settings.prefix, name)?, properties.clone());
            if ensure {
                desired.ensure_topic().await?;
                store.ensure_topic().await?;
            }
            tenants.push(TenantControl {
                name: name.to_string(),
                desired,
                store,
                follower: None,
            });
        }
        std::fs::create_dir_all(&launch.plugins_dir).with_context(|| {
            format!(
                "creating the directory for deployed plugins {}",
                launch.plugins_dir.display()
            )
        })?;
        let host = host_name();
        let pid = std::process::id();
        let started_ms = now_ms();
        let decisions_group = decisions_topic(&settings.prefix);
        let leadership = Leadership::join(&properties, &decisions_group, &decisions_group)?;
        let registries = Registries::new(
            settings.registry_auth_file.clone(),
            settings.insecure_registries.clone(),
        );
        Ok(Member {
            config,
            settings,
            launch,
            tenants,
            deployed: BTreeMap::new(),
            refused: BTreeMap::new(),
            waiting: BTreeMap::new(),
            status,
            registries,
            decisions,
            decisions_follower: None,
            leadership: Some(leadership),
            statuses: None,
            canaries_seen: HashMap::new(),
            identity: Identity {
                member: format!("{host}:{pid}:{started_ms}"),
                host,
                pid,
                started_ms,
            },
            counted: HashMap::new(),
            published: BTreeMap::new(),
        })
    }

    /// How often to look for deploys.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.settings.poll_interval_ms)
    }

    /// How often to publish the status besides on changes.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.settings.status_interval_ms)
    }

    /// This member's id in the status topic.
    pub fn id(&self) -> &str {
        &self.identity.member
    }

    /// The deployed pipelines running now.
    pub fn pipelines(&self) -> Vec<Arc<Supervised>> {
        self.deployed
            .values()
            .map(|r| r.supervised.clone())
            .collect()
    }

    /// The deploy each deployed pipeline runs, with the deploys before it, by pipeline name.
    pub fn deploys(&self) -> Vec<(String, DesiredPipeline)> {
        self.deployed
            .values()
            .map(|r| (r.supervised.name().to_string(), r.desired.clone()))
            .collect()
    }

    /// Reads every tenant's desired pipelines and makes them run: starts new ones, swaps new
    /// versions, stops removed ones. Returns whether anything changed (the status is then due).
    pub async fn reconcile(&mut self) -> bool {
        let mut changed = false;
        // A new decision changes what runs without a new deploy record; and until the
        // decisions were read, a canary's plan is not known: nothing is applied.
        let decided = self.follow_decisions().await;
        if self.decisions_follower.is_none() {
            return self.started_or_stopped().await;
        }
        for index in 0..self.tenants.len() {
            let (tenant, desired) = {
                let t = &self.tenants[index];
                (t.name.clone(), t.desired.clone())
            };
            let retrying = decided || self.waiting.keys().any(|(t, _)| *t == tenant);
            let follower = self.tenants[index].follower.take();
            // Read once, then followed: a poll looks at records already fetched, and asks the
            // broker nothing. Deploys waiting for the broker are tried again on every poll.
            let read = tokio::task::spawn_blocking(move || {
                let mut follower = match follower {
                    Some(follower) => follower,
                    None => match desired.follow() {
                        Ok(follower) => follower,
                        Err(e) => return (None, Err(e)),
                    },
                };
                let wanted = follower
                    .changed()
                    .map(|changed| changed.or_else(|| retrying.then(|| follower.current())));
                (Some(follower), wanted)
            });
            let wanted = match read.await {
                Ok((follower, wanted)) => {
                    self.tenants[index].follower = follower;
                    match wanted {
                        Ok(Some(wanted)) => wanted,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(%tenant, "cannot read the desired pipelines, keeping what runs: {e:#}");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(%tenant, "the desired-state reader panicked: {e}");
                    continue;
                }
            };
            changed |= self.stop_removed(&tenant, &wanted).await;
            for (pipeline, desired) in wanted {
                match desired {
                    Ok(desired) => changed |= self.apply(index, desired).await,
                    Err(e) => changed |= self.refuse_unreadable(&tenant, pipeline, e),
                }
            }
        }
        if self.leadership.as_ref().is_some_and(Leadership::leads) {
            self.decide().await;
        } else {
            self.statuses = None;
            self.canaries_seen.clear();
        }
        changed || self.started_or_stopped().await
    }

    /// Takes the decisions written since the last look; whether there were any.
    async fn follow_decisions(&mut self) -> bool {
        let follower = self.decisions_follower.take();
        let decisions = self.decisions.clone();
        let read = read_off_thread(
            "the fleet's decisions (retried at the next poll)",
            move || {
                let (mut follower, fresh) = match follower {
                    Some(follower) => (follower, false),
                    None => (decisions.follow()?, true),
                };
                let new = follower.update(Duration::ZERO)?;
                Ok((follower, fresh || new))
            },
        );
        let Some((follower, new)) = read.await else {
            return false;
        };
        self.decisions_follower = Some(follower);
        new
    }

    /// The decision on `key`'s deploy `generation`, if it was taken.
    fn decision(&self, key: &Key, generation: u64) -> Option<&Decision> {
        self.decisions_follower
            .as_ref()?
            .log()
            .get(&key.0, &key.1, generation)
    }

    /// As the fleet's leader: takes the verdict of each canary that is due one, from every live
    /// member's counts, and records it. A failure is logged; the next poll tries again.
    async fn decide(&mut self) {
        let mut due = Vec::new();
        for tenant in &self.tenants {
            let Some(follower) = &tenant.follower else {
                continue;
            };
            for desired in follower.current().into_values().flatten() {
                let key = (tenant.name.clone(), desired.pipeline.clone());
                let decided = self
                    .decision(&key, desired.generation)
                    .is_some_and(|d| d.decides(&desired));
                if desired.canary.is_some() && !decided {
                    due.push((tenant.name.clone(), desired));
                }
            }
        }
        let now = now_ms();
        // A canary's time runs from when this member, as leader, first saw it: the deploying
        // machine's clock is not the leader's.
        self.canaries_seen.retain(|seen, _| {
            due.iter()
                .any(|(t, d)| (t, &d.pipeline, d.generation) == (&seen.0, &seen.1, seen.2))
        });
        for (tenant, desired) in &due {
            self.canaries_seen
                .entry((tenant.clone(), desired.pipeline.clone(), desired.generation))
                .or_insert(now);
        }
        if due.is_empty() {
            self.statuses = None;
            return;
        }
        let follower = self.statuses.take();
        let status = self.status.clone();
        let read = read_off_thread("the fleet's status for a canary's decision", move || {
            let mut follower = match follower {
                Some(follower) => follower,
                None => status.follow()?,
            };
            let live = follower.live(Duration::ZERO)?;
            Ok((follower, live))
        });
        let Some((follower, members)) = read.await else {
            return;
        };
        self.statuses = Some(follower);
        for (tenant, desired) in due {
            let Some(plan) = &desired.canary else {
                continue;
            };
            let (mut on_canary, mut on_stable) = (Tally::default(), Tally::default());
            for member in &members {
                let counted = member
                    .pipeline(&tenant, &desired.pipeline)
                    .and_then(|p| p.canary.as_ref())
                    .filter(|c| {
                        c.generation == desired.generation && c.plugin == plan.plugin.as_str()
                    });
                if let Some(c) = counted {
                    on_canary = on_canary.plus(c.canary);
                    on_stable = on_stable.plus(c.stable);
                }
            }
            let seen =
                self.canaries_seen[&(tenant.clone(), desired.pipeline.clone(), desired.generation)];
            let (canary, stable) = (on_canary.deliveries, on_stable.deliveries);
            if !canary::due(canary, stable, plan.messages, seen, plan.max_ms, now) {
                continue;
            }
            // A leader that took over a moment ago may not have read its predecessor's last
            // decision yet: the topic is read to its end before one is taken.
            let decisions = self.decisions.clone();
            let read = read_off_thread("the fleet's decisions before taking one", move || {
                decisions.read()
            });
            let Some(log) = read.await else {
                continue;
            };
            let taken = log
                .get(&tenant, &desired.pipeline, desired.generation)
                .filter(|d| d.decides(&desired))
                .cloned();
            if let Some(taken) = taken {
                if let Some(follower) = &mut self.decisions_follower {
                    follower.remember(taken);
                }
                continue;
            }
            let judgement = canary::judge(on_canary, on_stable);
            let decision = Decision {
                tenant: tenant.clone(),
                pipeline: desired.pipeline.clone(),
                generation: desired.generation,
                canary: plan.plugin.to_string(),
                stable: desired.plugin.to_string(),
                started_ms: plan.started_ms,
                verdict: judgement.verdict,
                reason: judgement.reason,
                canary_tally: on_canary,
                stable_tally: on_stable,
                canary_rates: on_canary.rates(),
                stable_rates: on_stable.rates(),
                decided_ms: now,
                by: self.identity.member.clone(),
            };
            match self.decisions.publish(&decision).await {
                Ok(()) => {
                    if let Some(follower) = &mut self.decisions_follower {
                        follower.remember(decision.clone());
                    }
                    metrics::counter!(
                        "ackbar_canary_decisions_total",
                        "tenant" => tenant.clone(),
                        "pipeline" => desired.pipeline.clone(),
                        "verdict" => decision.verdict.name()
                    )
                    .increment(1);
                    tracing::info!(
                        tenant = %tenant, pipeline = %desired.pipeline,
                        "canary of deploy {}: {}: {}",
                        desired.generation, decision.verdict.name(), decision.reason
                    );
                }
                Err(e) => tracing::warn!(
                    tenant = %tenant, pipeline = %desired.pipeline,
                    "recording the canary's decision failed, retrying: {e:#}"
                ),
            }
        }
    }

    /// Whether a deployed pipeline started, went down, changed version or partitions since the
    /// last status.
    async fn started_or_stopped(&self) -> bool {
        for (key, running) in &self.deployed {
            let now = running.supervised.running().await.map(|r| Published {
                plugin_version: r.plugin_version,
                partitions: r.partitions,
            });
            if self.published.get(key) != Some(&now) {
                return true;
            }
        }
        false
    }

    /// Stops `tenant`'s deployed pipelines that are no longer wanted, committing what they
    /// settled.
    async fn stop_removed(
        &mut self,
        tenant: &str,
        wanted: &BTreeMap<String, Result<DesiredPipeline>>,
    ) -> bool {
        let gone: Vec<Key> = self
            .deployed
            .keys()
            .chain(self.refused.keys())
            .filter(|(t, p)| t == tenant && !wanted.contains_key(p))
            .cloned()
            .collect();
        for key in &gone {
            self.refused.remove(key);
            self.waiting.remove(key);
            if let Some(running) = self.deployed.remove(key) {
                tracing::info!(tenant = %key.0, pipeline = %key.1, "deploy removed: stopping the pipeline");
                if let Err(e) = running.supervised.shutdown().await {
                    tracing::error!(tenant = %key.0, pipeline = %key.1, "stopping the removed pipeline failed: {e:#}");
                }
            }
        }
        !gone.is_empty()
    }

    /// A record that is not a deployed pipeline: refused (once), and whatever runs under that
    /// name keeps running.
    fn refuse_unreadable(&mut self, tenant: &str, pipeline: String, error: anyhow::Error) -> bool {
        let reason = format!("deploy to tenant '{tenant}': {error:#}");
        let key = (tenant.to_string(), pipeline);
        if self
            .refused
            .get(&key)
            .is_some_and(|(r, _)| r.reason == reason)
        {
            return false;
        }
        tracing::error!(tenant = %key.0, pipeline = %key.1, "{reason}");
        let refusal = Refusal {
            generation: 0,
            plugin: String::new(),
            reason,
        };
        self.refused.insert(key, (refusal, String::new()));
        true
    }

    /// Applies one desired pipeline unless it runs or was refused already. Returns whether
    /// anything changed.
    async fn apply(&mut self, tenant_index: usize, desired: DesiredPipeline) -> bool {
        let tenant = self.tenants[tenant_index].name.clone();
        let key = (tenant.clone(), desired.pipeline.clone());
        let generation = desired.generation;
        let plan = desired.plan(self.decision(&key, generation));
        // A deploy is its generation, plugin and spec: two deploys racing may both write the
        // same generation, and the newest record of the two is the one to run.
        if let Some(running) = self.deployed.get_mut(&key) {
            if running.plan == plan && running.desired.spec == desired.spec {
                if running.desired == desired {
                    return false;
                }
                // A deploy of what runs already (a rollback to it): nothing to swap.
                running.desired = desired;
                self.refused.remove(&key);
                return true;
            }
        }
        if self.refused.get(&key).is_some_and(|(r, spec)| {
            r.generation == generation
                && r.plugin == desired.plugin.as_str()
                && *spec == desired.spec
        }) {
            return false;
        }
        match self
            .try_apply(tenant_index, &key, desired.clone(), plan.clone())
            .await
        {
            Ok(()) => {
                match &plan.canary {
                    None => tracing::info!(
                        tenant = %key.0, pipeline = %key.1,
                        "running deploy {generation} (plugin {})", plan.plugin
                    ),
                    Some((canary, every)) => tracing::info!(
                        tenant = %key.0, pipeline = %key.1,
                        "running deploy {generation}: canary {canary} on one partition in {every}, \
                         plugin {} on the others", plan.plugin
                    ),
                }
                self.refused.remove(&key);
                self.waiting.remove(&key);
                true
            }
            Err(NotApplied::Refused(reason)) => {
                tracing::error!(
                    tenant = %key.0, pipeline = %key.1,
                    "deploy {generation} refused, the version before it keeps running: {reason}"
                );
                self.waiting.remove(&key);
                self.refused.insert(
                    key,
                    (
                        Refusal {
                            generation,
                            plugin: desired.plugin.to_string(),
                            reason,
                        },
                        desired.spec.clone(),
                    ),
                );
                true
            }
            Err(NotApplied::Later(e)) => {
                let reason = format!("{e:#}");
                let again = self
                    .waiting
                    .get(&key)
                    .is_some_and(|(g, r)| *g == generation && *r == reason);
                if !again {
                    tracing::warn!(
                        tenant = %key.0, pipeline = %key.1,
                        "deploy {generation} not applied yet, retrying: {reason}"
                    );
                    self.waiting.insert(key, (generation, reason));
                }
                false
            }
        }
    }

    async fn try_apply(
        &mut self,
        tenant_index: usize,
        key: &Key,
        desired: DesiredPipeline,
        plan: Plan,
    ) -> Result<(), NotApplied> {
        let deploy = format!("deploy to tenant '{}': pipeline '{}'", key.0, key.1);
        if !fits_a_name(&key.1) {
            return Err(NotApplied::Refused(format!(
                "{deploy}: a pipeline's name is 1 to {MAX_NAME} letters, digits, '.', '_' and '-'"
            )));
        }
        if !self.deployed.contains_key(key) {
            let of_tenant = self.deployed.keys().filter(|(t, _)| *t == key.0).count();
            if of_tenant >= self.settings.max_deployed_pipelines {
                return Err(NotApplied::Refused(format!(
                    "{deploy}: the tenant runs {of_tenant} deployed pipelines, the most this \
                     member takes ([control] max_deployed_pipelines)"
                )));
            }
        }
        let in_deploy = |e: NotApplied| match e {
            NotApplied::Refused(why) => NotApplied::Refused(format!("{deploy}: {why}")),
            later => later,
        };
        let path = self
            .fetch(tenant_index, &plan.plugin, desired.source_of(&plan.plugin))
            .await
            .map_err(in_deploy)?;
        let canary = match &plan.canary {
            Some((digest, every)) => Some(CanaryPlugin {
                path: self
                    .fetch(tenant_index, digest, desired.source_of(digest))
                    .await
                    .map_err(in_deploy)?,
                every: *every,
            }),
            None => None,
        };
        let others: Vec<(&str, &str)> = self
            .deployed
            .keys()
            .map(|(t, p)| (t.as_str(), p.as_str()))
            .collect();
        let mut config = self.config.deployed_pipeline(
            &key.0,
            &desired.pipeline,
            &desired.spec,
            &path,
            others,
        )?;
        // The file is named by its digest and never changes; deploys replace it.
        config.watch_plugin = false;
        config.canary = canary.clone();
        if config.limits.fuel.is_some() && !self.launch.runtime.metered() {
            return Err(NotApplied::Refused(format!(
                "{deploy}: field `limits.fuel` needs an engine that counts fuel: give tenant '{}' a \
                 fuel limit in the member's config",
                key.0
            )));
        }
        let refuse_plugin = |e: anyhow::Error| {
            NotApplied::Refused(format!("{deploy}: plugin {}: {e:#}", desired.plugin))
        };
        let same_spec = self
            .deployed
            .get(key)
            .is_some_and(|r| r.desired.spec == desired.spec);
        let running_now = match self.deployed.get(key) {
            Some(r) => r.supervised.running().await.is_some(),
            None => false,
        };
        // A running pipeline with the same spec swaps, compiling and smoke-testing as it does.
        // Anything else (a new pipeline, a new spec, a pipeline that is down and takes the plugin
        // at its next start) loads the plugin here first, so one that does not load is refused
        // instead of restarted forever.
        if !(same_spec && running_now) {
            let check = config.clone();
            let runtime = self.launch.runtime.clone();
            tokio::task::spawn_blocking(move || {
                PluginSlot::load(
                    &check.tenant,
                    &check.name,
                    &runtime,
                    &check.plugin,
                    check.limits,
                    check.grants.clone(),
                    check.smoke_payload.clone(),
                )
                .and_then(|slot| match &check.canary {
                    Some(c) => slot
                        .set_canary(Some((&c.path, c.every)))
                        .context("the canary's plugin"),
                    None => Ok(()),
                })
            })
            .await
            .map_err(|e| NotApplied::Later(e.into()))?
            .map_err(refuse_plugin)?;
        }
        if let Some(running) = self.deployed.get_mut(key).filter(|_| same_spec) {
            running
                .supervised
                .switch_plugin(path)
                .await
                .map_err(refuse_plugin)?;
            // The plugin first, then the canary: a promotion runs the canary's version on the
            // canary's partitions throughout.
            running.supervised.set_canary(canary).await.map_err(|e| {
                NotApplied::Refused(format!("{deploy}: the canary's plugin: {e:#}"))
            })?;
            running.desired = desired;
            running.plan = plan;
            return Ok(());
        }
        if let Some(old) = self.deployed.remove(key) {
            tracing::info!(tenant = %key.0, pipeline = %key.1, "the deploy changes the spec: restarting the pipeline");
            if let Err(e) = old.supervised.shutdown().await {
                tracing::error!(tenant = %key.0, pipeline = %key.1, "stopping the pipeline's previous spec failed: {e:#}");
            }
        }
        let budget = self.launch.budgets.get(&key.0).cloned().ok_or_else(|| {
            NotApplied::Refused(format!("tenant '{}' has no budget on this member", key.0))
        })?;
        let supervised = Supervised::spawn(
            config,
            Launch {
                bootstrap: self.launch.bootstrap.clone(),
                runtime: self.launch.runtime.clone(),
                budget,
                backoff: self.launch.backoff,
            },
        );
        self.deployed.insert(
            key.clone(),
            Running {
                supervised,
                desired,
                plan,
            },
        );
        Ok(())
    }

    /// The component `digest` as a local file: from the cache when it is there and intact,
    /// else from `source` (an `oci://` reference pinned to its manifest) or, without one, the
    /// tenant's plugin store. A registry that cannot be reached is tried again on the next
    /// poll; one whose answer does not match the digest is refused.
    async fn fetch(
        &self,
        tenant_index: usize,
        digest: &PluginDigest,
        source: Option<&str>,
    ) -> Result<PathBuf, NotApplied> {
        // Per tenant: a digest another tenant deployed (statuses show them) is not this one's
        // until its own store has it.
        let tenant = &self.tenants[tenant_index].name;
        let file_name = format!("{}.wasm", digest.as_str().replace(':', "-"));
        let path = self.launch.plugins_dir.join(tenant).join(file_name);
        let (wanted, target) = (digest.clone(), path.clone());
        let cached = tokio::task::spawn_blocking(move || {
            std::fs::read(&target).is_ok_and(|bytes| PluginDigest::of(&bytes) == wanted)
        })
        .await
        .map_err(|e| NotApplied::Later(e.into()))?;
        if cached {
            return Ok(path);
        }
        let pulled = match source {
            None => None,
            Some(source) => {
                let reference = OciReference::parse(source).map_err(|e| {
                    NotApplied::Refused(format!("plugin {digest}: source {source:?}: {e}"))
                })?;
                let allowed = self
                    .config
                    .tenants
                    .iter()
                    .find(|t| t.name == *tenant)
                    .is_some_and(|t| t.may_pull_from(reference.registry()));
                if !allowed {
                    return Err(NotApplied::Refused(format!(
                        "plugin {digest}: tenant '{tenant}' may not pull from registry {}: the \
                         member's file lists the registries a tenant may use in its `registries`",
                        reference.registry()
                    )));
                }
                let pinned = PinnedComponent {
                    reference,
                    component: digest.clone(),
                };
                // A registry that trickles its answer must not hold the member's loop forever.
                match tokio::time::timeout(PULL_TIMEOUT, oci::pull(&self.registries, &pinned)).await
                {
                    Ok(Ok(bytes)) => Some(bytes),
                    Ok(Err(e)) if e.is_unreachable() => return Err(NotApplied::Later(e.into())),
                    Ok(Err(e)) => return Err(NotApplied::Refused(format!("plugin {digest}: {e}"))),
                    Err(_) => {
                        return Err(NotApplied::Later(anyhow::anyhow!(
                            "{source}: the pull took longer than {} s",
                            PULL_TIMEOUT.as_secs()
                        )))
                    }
                }
            }
        };
        let store = self.tenants[tenant_index].store.clone();
        let (wanted, target) = (digest.clone(), path.clone());
        let fetched = tokio::task::spawn_blocking(move || -> Result<()> {
            let bytes = match pulled {
                Some(bytes) => bytes,
                None => store.get(&wanted)?,
            };
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let partial = target.with_extension(format!("{}.partial", std::process::id()));
            std::fs::write(&partial, &bytes)
                .and_then(|()| std::fs::rename(&partial, &target))
                .with_context(|| format!("writing {}", target.display()))
        })
        .await
        .map_err(|e| NotApplied::Later(e.into()))?;
        match fetched {
            Ok(()) => Ok(path),
            Err(e) if e.is::<PluginUnavailable>() => Err(NotApplied::Refused(e.to_string())),
            Err(e) => Err(NotApplied::Later(e)),
        }
    }

    /// Publishes what this member runs: `file` (its file's pipelines) and what it deployed.
    /// A failure is logged; the next interval tries again.
    pub async fn publish_status(&mut self, file: &[Arc<Supervised>]) {
        let mut pipelines = Vec::new();
        for supervised in file
            .iter()
            .chain(self.deployed.values().map(|r| &r.supervised))
        {
            let key = (
                supervised.tenant().to_string(),
                supervised.name().to_string(),
            );
            let running = supervised.running().await;
            if self.deployed.contains_key(&key) {
                self.published.insert(
                    key.clone(),
                    running.as_ref().map(|r| Published {
                        plugin_version: r.plugin_version.clone(),
                        partitions: r.partitions.clone(),
                    }),
                );
            }
            let messages = running.as_ref().map_or(0, |r| r.stats.messages);
            let now = Instant::now();
            let rate = match self.counted.insert(key.clone(), (now, messages)) {
                Some((then, before)) if now > then && messages >= before => {
                    (messages - before) as f64 / (now - then).as_secs_f64()
                }
                _ => 0.0,
            };
            pipelines.push(PipelineStatus {
                tenant: key.0.clone(),
                pipeline: key.1.clone(),
                deployed: self.deployed.get(&key).map(|r| Deployed {
                    generation: r.desired.generation,
                    plugin: r.plan.plugin.to_string(),
                }),
                refused: self.refused.get(&key).map(|(r, _)| Refusal {
                    reason: crate::text::truncate(&r.reason, MAX_REASON).to_string(),
                    ..r.clone()
                }),
                plugin_version: running.as_ref().map(|r| r.plugin_version.clone()),
                down: match &running {
                    Some(_) => None,
                    None => Some(
                        supervised
                            .last_failure()
                            .unwrap_or_else(|| "starting".into()),
                    ),
                },
                partitions: running.as_ref().map_or_else(Vec::new, |r| {
                    r.partitions
                        .iter()
                        .map(|tp| format!("{}/{}", tp.topic, tp.partition))
                        .collect()
                }),
                lag: running.as_ref().and_then(|r| r.lag),
                messages,
                traps: running.as_ref().map_or(0, |r| r.stats.traps),
                errors: running.as_ref().map_or(0, |r| r.stats.errors),
                rate,
                canary: self.canary_status(&key, running.as_ref()),
                waiting: self.waiting.get(&key).map(|(generation, reason)| {
                    let reason = crate::text::truncate(reason, MAX_REASON);
                    format!("deploy {generation}: {reason}")
                }),
            });
        }
        // Refused deploys of pipelines that never started, so many and no more: the record
        // must stay far below a broker message.
        let never_started = self
            .refused
            .iter()
            .filter(|(key, _)| !self.deployed.contains_key(*key))
            .take(MAX_REFUSALS_SHOWN);
        for (key, (refusal, _)) in never_started {
            {
                pipelines.push(PipelineStatus {
                    tenant: key.0.clone(),
                    pipeline: key.1.clone(),
                    deployed: None,
                    refused: Some(Refusal {
                        reason: crate::text::truncate(&refusal.reason, MAX_REASON).to_string(),
                        ..refusal.clone()
                    }),
                    plugin_version: None,
                    down: Some("refused".into()),
                    partitions: vec![],
                    lag: None,
                    messages: 0,
                    traps: 0,
                    errors: 0,
                    rate: 0.0,
                    canary: None,
                    waiting: None,
                });
            }
        }
        self.published
            .retain(|key, _| self.deployed.contains_key(key));
        let status = MemberStatus {
            member: self.identity.member.clone(),
            host: self.identity.host.clone(),
            pid: self.identity.pid,
            started_ms: self.identity.started_ms,
            updated_ms: now_ms(),
            interval_ms: self.settings.status_interval_ms,
            tenants: self.tenants.iter().map(|t| t.name.clone()).collect(),
            pipelines,
        };
        if let Err(e) = self.status.publish(&status).await {
            tracing::warn!("publishing this member's status failed: {e:#}");
        }
    }

    /// The canary `key` runs here, with its counts, while it waits for its decision.
    fn canary_status(
        &self,
        key: &Key,
        running: Option<&crate::supervisor::RunningNow>,
    ) -> Option<CanaryStatus> {
        let deployed = self.deployed.get(key)?;
        let (digest, _) = deployed.plan.canary.as_ref()?;
        let plan = deployed.desired.canary.as_ref()?;
        let now = running?.canary.as_ref()?;
        Some(CanaryStatus {
            generation: deployed.desired.generation,
            plugin: digest.to_string(),
            version: now.version.clone(),
            percent: plan.percent,
            canary: now.canary,
            stable: now.stable,
        })
    }

    /// Deletes this member's status: it is stopping.
    pub async fn leave(&self) {
        if let Err(e) = self.status.remove(&self.identity.member).await {
            tracing::warn!("removing this member's status failed: {e:#}");
        }
    }
}

/// The longest one pull from a registry may take before it is tried again later.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// Refusals of pipelines that never started shown in the status, at most.
const MAX_REFUSALS_SHOWN: usize = 32;
/// The longest refusal reason shown in the status, in bytes.
const MAX_REASON: usize = 2048;

/// The longest name a deployed pipeline may have.
const MAX_NAME: usize = 100;

/// Whether a deployed pipeline's name is one a member takes: it becomes a metric label, a log
/// field and part of the status.
fn fits_a_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every control topic a member of `config` reads or writes: the status topic and each
/// declared tenant's two.
pub fn control_topics(config: &Config) -> Result<Vec<String>> {
    let Some(control) = &config.control else {
        return Ok(vec![]);
    };
    let mut topics = vec![
        status_topic(&control.prefix),
        decisions_topic(&control.prefix),
    ];
    for tenant in config.declared_tenants() {
        topics.push(pipelines_topic(&control.prefix, tenant)?);
        topics.push(plugins_topic(&control.prefix, tenant)?);
    }
    Ok(topics)
}

/// The machine's host name, for the status.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `read`, a blocking read of a control topic, off the async threads; `None` once the
/// failure (or a panic) is logged, naming `what` was read. The caller tries again later.
async fn read_off_thread<T: Send + 'static>(
    what: &'static str,
    read: impl FnOnce() -> Result<T> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!("cannot read {what}: {e:#}");
            None
        }
        Err(e) => {
            tracing::error!("reading {what} panicked: {e}");
            None
        }
    }
}
