//! `ackbar deploy`, `rollback`, `undeploy` and `status`: a tenant changes what the fleet runs
//! by writing its own control topics, then reads the members' status until every live member
//! that serves the tenant applied (or refused) the change.

use crate::canary::{Rates, Tally, Verdict, MAX_PERCENT};
use crate::control::{
    decisions_topic, now_ms, pipelines_topic, plugins_topic, status_topic, CanaryDeploy, Decision,
    DecisionLog, Decisions, DesiredPipeline, DesiredState, MemberStatus, PipelineStatus,
    PluginDigest, PluginStore, StatusTopic,
};
use crate::oci::{self, OciReference, Registries};
use crate::plugin::{inspect, PluginRuntime};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How a fleet command reaches the control plane.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Bootstrap servers, e.g. 127.0.0.1:9092.
    #[arg(long, short = 'b')]
    pub brokers: String,
    /// A librdkafka property, as kcat takes it (repeatable): `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// A file of librdkafka properties, one `key=value` per line (`#` starts a comment).
    #[arg(short = 'F', long = "properties", value_name = "FILE")]
    pub properties_file: Option<PathBuf>,
    /// The members' `[control] prefix`.
    #[arg(long, default_value = "ackbar")]
    pub prefix: String,
}

impl ControlArgs {
    /// The client properties: the file's, then `-X`'s, then `--brokers`.
    fn properties(&self) -> Result<BTreeMap<String, String>> {
        let mut properties = BTreeMap::new();
        if let Some(file) = &self.properties_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            for (index, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (key, value) = split_property(line)
                    .with_context(|| format!("{}: line {}", file.display(), index + 1))?;
                properties.insert(key, value);
            }
        }
        for property in &self.property {
            let (key, value) = split_property(property).context("-X")?;
            properties.insert(key, value);
        }
        properties.insert("bootstrap.servers".into(), self.brokers.clone());
        Ok(properties)
    }
}

fn split_property(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => bail!("{text:?} is not key=value"),
    }
}

/// What a fleet command changes, and waits for.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// The tenant the pipeline belongs to (its control topics are `<prefix>.<tenant>.*`).
    #[arg(long)]
    pub tenant: String,
    /// The pipeline's name.
    #[arg(long)]
    pub pipeline: String,
    /// Seconds to wait for every live member to apply the change (after a canary's decision,
    /// besides its minutes); 0 does not wait.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// `ackbar deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The pipeline's `[[tenant.pipeline]]` table without `name` and `plugin` (topics,
    /// group_id, ack_policy, ...). Required for a new pipeline; without it the running spec
    /// stays.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Run the new version on this share of the pipeline's partitions first (`10%`: one
    /// partition in ten, partition 0 among them; at most 50%), the deployed version on the
    /// others, until the fleet promotes it or rolls it back. The command waits for the
    /// decision and fails on a rollback.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub canary: Option<u32>,
    /// Deliveries on the canary (and at least as many on the deployed version) after which the
    /// decision is taken.
    #[arg(long, default_value_t = 1000, requires = "canary")]
    pub canary_messages: u64,
    /// Minutes after which the decision is taken with fewer deliveries.
    #[arg(long, default_value_t = 10, requires = "canary")]
    pub canary_max_minutes: u64,
    /// A registry (`HOST` or `HOST:PORT`) spoken to over plain HTTP although not on loopback
    /// (repeatable); the members need it in `[control] insecure_registries` too.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// The handler component: a file, or `oci://HOST[:PORT]/REPO[:TAG][@sha256:…]` in a
    /// registry (pinned to the manifest's digest when deployed; credentials from the Docker
    /// config file).
    pub plugin: PathBuf,
}

fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<u32>() {
        Ok(p) if (1..=MAX_PERCENT).contains(&p) => Ok(p),
        _ => Err(format!(
            "{text:?} is not a share of 1% to {MAX_PERCENT}% (a canary on more is a deploy)"
        )),
    }
}

/// `ackbar rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The deploy to return to: its generation, or its plugin digest (or a prefix of it).
    /// Default: the one before the current one.
    #[arg(long)]
    pub to: Option<String>,
}

/// `ackbar status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlArgs,
}

/// One tenant's control topics, reached with the command's properties.
struct TenantControl {
    desired: DesiredState,
    store: PluginStore,
    status: StatusTopic,
    decisions: Decisions,
}

impl TenantControl {
    fn new(control: &ControlArgs, tenant: &str) -> Result<Self> {
        let properties = control.properties()?;
        // The producer's id is acquired while the command does its own work.
        crate::control::warm_up(&properties)?;
        Ok(TenantControl {
            desired: DesiredState::new(
                pipelines_topic(&control.prefix, tenant)?,
                properties.clone(),
            ),
            store: PluginStore::new(plugins_topic(&control.prefix, tenant)?, properties.clone()),
            status: StatusTopic::new(status_topic(&control.prefix), properties.clone()),
            decisions: Decisions::new(decisions_topic(&control.prefix), properties),
        })
    }

    async fn current(&self, pipeline: &str) -> Result<Option<DesiredPipeline>> {
        let desired = self.desired.clone();
        let mut all = tokio::task::spawn_blocking(move || desired.read()).await??;
        Ok(all.remove(pipeline))
    }

    /// The plugin `current` came to run: a canary's once promoted, else its plugin. Reads the
    /// decisions only for a canary deploy.
    async fn ran(&self, tenant: &str, current: &DesiredPipeline) -> Result<PluginDigest> {
        if current.canary.is_none() {
            return Ok(current.plugin.clone());
        }
        let decisions = self.decisions.clone();
        let log = tokio::task::spawn_blocking(move || decisions.read()).await??;
        Ok(current
            .plan(log.get(tenant, &current.pipeline, current.generation))
            .plugin)
    }
}

pub async fn deploy(args: DeployArgs) -> Result<()> {
    let DeployArgs {
        target,
        spec,
        canary,
        canary_messages,
        canary_max_minutes,
        insecure_registry,
        plugin,
    } = args;
    let control = TenantControl::new(&target.control, &target.tenant)?;
    let spec = match &spec {
        Some(path) => Some(read_spec(path)?),
        None => None,
    };
    let (bytes, source) = match plugin.to_str().filter(|p| p.starts_with(oci::SCHEME)) {
        Some(text) => {
            let reference = OciReference::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let registries = Registries::from_env().with_insecure(insecure_registry);
            // Pinned now: a tag moved later changes nothing that runs.
            let pinned = oci::resolve(&registries, &reference).await?;
            let bytes = oci::pull(&registries, &pinned).await?;
            eprintln!("{text}: {}", pinned.reference);
            (bytes, Some(pinned.reference.to_string()))
        }
        None => {
            let bytes = std::fs::read(&plugin)
                .with_context(|| format!("plugin {}: cannot read the file", plugin.display()))?;
            (bytes, None)
        }
    };
    // The local check and the read of what runs now are independent: both at once.
    let pulled = source
        .as_ref()
        .map(|reference| (reference.clone(), bytes.clone()));
    let local = plugin.clone();
    let check = tokio::task::spawn_blocking(move || {
        let runtime = PluginRuntime::new()?;
        match pulled {
            None => inspect(&runtime, &local),
            // Checked as a file, as a member will load it.
            Some((reference, bytes)) => {
                let file = tempfile::Builder::new().suffix(".wasm").tempfile()?;
                std::fs::write(file.path(), &bytes)?;
                inspect(&runtime, file.path()).with_context(|| format!("plugin {reference}"))
            }
        }
    });
    let (report, current) = tokio::join!(check, control.current(&target.pipeline));
    let report = report??;
    eprintln!(
        "{}: a handler component (version {})",
        plugin.display(),
        report.version
    );
    let current = current?;
    let spec = match (spec, &current) {
        (Some(spec), _) => spec,
        (None, Some(current)) => current.spec.clone(),
        (None, None) => bail!(
            "pipeline '{}' of tenant '{}' is not deployed yet: give its spec with --spec FILE",
            target.pipeline,
            target.tenant
        ),
    };
    let ran = match &current {
        Some(current) => Some(control.ran(&target.tenant, current).await?),
        None => None,
    };
    let digest = PluginDigest::of(&bytes);
    let desired = match (&current, ran, canary) {
        (Some(current), Some(ran), Some(percent)) => {
            if spec != current.spec {
                bail!("a canary tries a new version of the running spec: deploy a new spec without --canary");
            }
            if digest == ran {
                bail!(
                    "pipeline '{}' runs plugin {digest} already: nothing to try",
                    target.pipeline
                );
            }
            let mut desired = current.next(ran.clone(), ran.clone(), None, spec);
            desired.source = current.source_of(&ran).map(str::to_string);
            desired.canary = Some(CanaryDeploy {
                plugin: digest.clone(),
                source: source.clone(),
                percent,
                messages: canary_messages,
                max_ms: canary_max_minutes.saturating_mul(60_000),
                started_ms: now_ms(),
            });
            desired
        }
        (None, _, Some(_)) | (_, None, Some(_)) => bail!(
            "pipeline '{}' of tenant '{}' is not deployed yet: a canary runs beside a deployed \
             version; deploy it without --canary first",
            target.pipeline,
            target.tenant
        ),
        (Some(current), Some(ran), None) => current.next(ran, digest.clone(), source.clone(), spec),
        (_, _, None) => DesiredPipeline {
            pipeline: target.pipeline.clone(),
            plugin: digest.clone(),
            source: source.clone(),
            spec,
            generation: 1,
            history: vec![],
            canary: None,
        },
    };
    if source.is_none() {
        control.store.put(&bytes).await?;
    }
    control.desired.publish(&desired).await?;
    eprintln!(
        "deploy {} of tenant '{}' pipeline '{}': plugin {digest} ({} bytes){}",
        desired.generation,
        target.tenant,
        target.pipeline,
        bytes.len(),
        match &desired.canary {
            Some(c) => format!(
                ", a canary on {}% of the partitions beside plugin {} until {} deliveries on each or {} min",
                c.percent, desired.plugin, c.messages, canary_max_minutes
            ),
            None => String::new(),
        }
    );
    wait_for(&control, &target, Some(desired.generation), None).await?;
    match &desired.canary {
        Some(plan) if target.timeout > 0 => {
            wait_for_decision(&control, &target, &desired, plan).await
        }
        _ => Ok(()),
    }
}

/// Waits for the fleet's decision on the canary of `desired`, prints it, and waits until every
/// member carried it out. Fails when the canary was rolled back.
async fn wait_for_decision(
    control: &TenantControl,
    target: &TargetArgs,
    desired: &DesiredPipeline,
    plan: &CanaryDeploy,
) -> Result<()> {
    eprintln!("waiting for the canary's decision");
    let decisions = control.decisions.clone();
    let mut follower = tokio::task::spawn_blocking(move || decisions.follow()).await??;
    // The deploy's own window, and the usual wait for the members after it.
    let deadline = Instant::now()
        + Duration::from_millis(
            plan.max_ms
                .saturating_sub(now_ms().saturating_sub(plan.started_ms)),
        )
        + Duration::from_secs(target.timeout);
    let decision = loop {
        if let Some(d) = follower
            .log()
            .get(&target.tenant, &target.pipeline, desired.generation)
            .filter(|d| d.decides(desired))
        {
            break d.clone();
        }
        if Instant::now() >= deadline {
            bail!(
                "no decision on the canary of deploy {} yet; `ackbar status` shows it when taken",
                desired.generation
            );
        }
        follower = tokio::task::spawn_blocking(move || {
            follower
                .update(Duration::from_millis(500))
                .map(|_| follower)
        })
        .await??;
    };
    print!("{}", render_decision(&decision));
    let runs = match decision.verdict {
        Verdict::Promote => &plan.plugin,
        Verdict::RollBack => &desired.plugin,
    };
    wait_for(control, target, Some(desired.generation), Some(runs)).await?;
    match decision.verdict {
        Verdict::Promote => Ok(()),
        Verdict::RollBack => bail!(
            "the canary was rolled back: every member runs plugin {} again",
            desired.plugin
        ),
    }
}

pub async fn rollback(args: RollbackArgs) -> Result<()> {
    let RollbackArgs { target, to } = args;
    let control = TenantControl::new(&target.control, &target.tenant)?;
    let Some(current) = control.current(&target.pipeline).await? else {
        bail!(
            "pipeline '{}' of tenant '{}' is not deployed",
            target.pipeline,
            target.tenant
        );
    };
    let chosen = match &to {
        None => current.history.first(),
        Some(to) => current.history.iter().find(|past| {
            to.parse::<u64>().is_ok_and(|g| g == past.generation)
                || (to.len() >= 8 && past.plugin.as_str().starts_with(to.as_str()))
                || (to.len() >= 8 && past.plugin.as_str()[7..].starts_with(to.as_str()))
        }),
    };
    let Some(past) = chosen.cloned() else {
        let known: Vec<String> = current
            .history
            .iter()
            .map(|p| format!("{} ({})", p.generation, p.plugin))
            .collect();
        bail!(
            "no earlier deploy of '{}' matches {}; known: {}",
            target.pipeline,
            to.as_deref().unwrap_or("the one before"),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let ran = control.ran(&target.tenant, &current).await?;
    let desired = current.next(
        ran,
        past.plugin.clone(),
        past.source.clone(),
        past.spec.clone(),
    );
    control.desired.publish(&desired).await?;
    eprintln!(
        "deploy {} of tenant '{}' pipeline '{}': back to deploy {} (plugin {})",
        desired.generation, target.tenant, target.pipeline, past.generation, past.plugin
    );
    wait_for(&control, &target, Some(desired.generation), None).await
}

pub async fn undeploy(target: TargetArgs) -> Result<()> {
    let control = TenantControl::new(&target.control, &target.tenant)?;
    // Any record goes, one that does not parse too: undeploy is how it goes away.
    let desired = control.desired.clone();
    let all = tokio::task::spawn_blocking(move || desired.read_each()).await??;
    if !all.contains_key(&target.pipeline) {
        bail!(
            "pipeline '{}' of tenant '{}' is not deployed",
            target.pipeline,
            target.tenant
        );
    }
    control.desired.remove(&target.pipeline).await?;
    eprintln!(
        "removed tenant '{}' pipeline '{}'",
        target.tenant, target.pipeline
    );
    wait_for(&control, &target, None, None).await
}

pub async fn status(args: StatusArgs) -> Result<()> {
    let status = StatusTopic::new(
        status_topic(&args.control.prefix),
        args.control.properties()?,
    );
    let members = tokio::task::spawn_blocking(move || status.read_live()).await??;
    print!("{}", render_fleet(&members, None));
    // Tenants may read the decisions, not need to: without access, the rest still shows.
    let decisions = Decisions::new(
        decisions_topic(&args.control.prefix),
        args.control.properties()?,
    );
    match tokio::task::spawn_blocking(move || decisions.read()).await? {
        Ok(log) => print!("{}", render_decisions(&log)),
        Err(e) => println!("canary decisions: cannot read them: {e:#}"),
    }
    Ok(())
}

/// The newest canary decisions, oldest first.
fn render_decisions(log: &DecisionLog) -> String {
    let mut all: Vec<&Decision> = log.all().collect();
    all.sort_by_key(|d| d.decided_ms);
    let shown = &all[all.len().saturating_sub(DECISIONS_SHOWN)..];
    if shown.is_empty() {
        return String::new();
    }
    let mut out = String::from("canary decisions:\n");
    for d in shown {
        out.push_str(&render_decision(d));
    }
    out
}

/// Canary decisions `ackbar status` shows, at most.
const DECISIONS_SHOWN: usize = 10;

fn render_decision(d: &Decision) -> String {
    format!(
        "  {}/{} deploy {}: {} canary {} (by member {}, {} s ago)\n    canary: {}\n    stable: {}\n    {}\n",
        d.tenant,
        d.pipeline,
        d.generation,
        match d.verdict {
            Verdict::Promote => "promoted",
            Verdict::RollBack => "rolled back",
        },
        short(&d.canary),
        d.by,
        now_ms().saturating_sub(d.decided_ms) / 1000,
        render_side(&d.canary_tally, &d.canary_rates),
        render_side(&d.stable_tally, &d.stable_rates),
        d.reason
    )
}

fn render_side(tally: &Tally, rates: &Rates) -> String {
    format!(
        "{} deliveries: {} traps ({:.3}%), {} errors ({:.3}%), {} dead letters ({:.3}%)",
        tally.deliveries,
        tally.traps,
        rates.trap * 100.0,
        tally.errors,
        rates.error * 100.0,
        tally.dead_letters,
        rates.dead_letter * 100.0
    )
}

fn read_spec(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    Ok(text)
}

/// Where one member is with a change.
enum Applied {
    Yes,
    Refused(String),
    Not,
}

/// Where `member` is with `generation` of the target (`None`: its removal); with `runs`, the
/// deploy's canary is decided and the member runs that plugin alone.
fn applied(
    member: &MemberStatus,
    target: &TargetArgs,
    generation: Option<u64>,
    runs: Option<&PluginDigest>,
) -> Applied {
    let pipeline = member.pipeline(&target.tenant, &target.pipeline);
    let runs_version = |p: &PipelineStatus, digest: &str| {
        // A version is the start of the digest's hex.
        p.plugin_version.as_deref().is_some_and(|v| {
            digest
                .strip_prefix(PluginDigest::PREFIX)
                .is_some_and(|hex| hex.starts_with(v))
        })
    };
    match (generation, pipeline) {
        (None, None) => Applied::Yes,
        (None, Some(_)) => Applied::Not,
        (Some(_), None) => Applied::Not,
        (Some(g), Some(p)) => {
            if let Some(refused) = p.refused.as_ref().filter(|r| r.generation >= g) {
                Applied::Refused(refused.reason.clone())
            } else if p.deployed.as_ref().is_some_and(|d| {
                // A newer deploy replaced it; or it runs, started with this plugin and not one
                // before it.
                d.generation > g
                    || (d.generation == g
                        && match runs {
                            None => runs_version(p, &d.plugin),
                            Some(digest) => p.canary.is_none() && runs_version(p, digest.as_str()),
                        })
            }) {
                Applied::Yes
            } else {
                Applied::Not
            }
        }
    }
}

/// Waits until every live member serving the tenant applied `generation` (or, with `None`,
/// removed the pipeline), then prints what each runs. Fails naming the members that refused,
/// or that did not get there within the timeout.
async fn wait_for(
    control: &TenantControl,
    target: &TargetArgs,
    generation: Option<u64>,
    runs: Option<&PluginDigest>,
) -> Result<()> {
    if target.timeout == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(target.timeout);
    // Read once, then followed: each member's next status arrives as it is written.
    let status = control.status.clone();
    let mut follower = Some(tokio::task::spawn_blocking(move || status.follow()).await??);
    let mut wait = Duration::ZERO;
    loop {
        let mut f = follower
            .take()
            .expect("the follower is back after each look");
        let (f, members) = tokio::task::spawn_blocking(move || {
            let members = f.live(wait);
            (f, members)
        })
        .await?;
        follower = Some(f);
        wait = Duration::from_millis(100);
        let members: Vec<MemberStatus> = members?
            .into_iter()
            .filter(|m| m.tenants.contains(&target.tenant))
            .collect();
        let states: Vec<(&MemberStatus, Applied)> = members
            .iter()
            .map(|m| (m, applied(m, target, generation, runs)))
            .collect();
        let pending: Vec<&str> = states
            .iter()
            .filter(|(_, a)| matches!(a, Applied::Not))
            .map(|(m, _)| m.member.as_str())
            .collect();
        if !members.is_empty() && pending.is_empty() {
            print!(
                "{}",
                render_fleet(&members, Some((&target.tenant, &target.pipeline)))
            );
            let refusals: Vec<String> = states
                .iter()
                .filter_map(|(m, a)| match a {
                    Applied::Refused(reason) => Some(format!("member {}: {reason}", m.member)),
                    _ => None,
                })
                .collect();
            if !refusals.is_empty() {
                bail!(
                    "{} of {} members refused the deploy; each keeps the version before it:\n{}",
                    refusals.len(),
                    members.len(),
                    refusals.join("\n")
                );
            }
            eprintln!("every member ({}) applied it", members.len());
            return Ok(());
        }
        if Instant::now() >= deadline {
            print!(
                "{}",
                render_fleet(&members, Some((&target.tenant, &target.pipeline)))
            );
            if members.is_empty() {
                bail!(
                    "no live member serves tenant '{}' (none has it in its config, or none runs)",
                    target.tenant
                );
            }
            bail!(
                "after {} s, {} of {} members have not applied it: {}",
                target.timeout,
                pending.len(),
                members.len(),
                pending.join(", ")
            );
        }
    }
}

/// The fleet as text: each member, then each of its pipelines (only `only` when given).
fn render_fleet(members: &[MemberStatus], only: Option<(&str, &str)>) -> String {
    let now = now_ms();
    let mut out = String::new();
    if members.is_empty() {
        out.push_str("no live members\n");
    }
    for m in members {
        let uptime = now.saturating_sub(m.started_ms) / 1000;
        out.push_str(&format!(
            "member {} (host {}, pid {}, up {})\n",
            m.member,
            m.host,
            m.pid,
            human_duration(uptime)
        ));
        for p in &m.pipelines {
            if only.is_some_and(|(t, n)| (t, n) != (p.tenant.as_str(), p.pipeline.as_str())) {
                continue;
            }
            let source = match &p.deployed {
                Some(d) => format!("deploy {} plugin {}", d.generation, short(&d.plugin)),
                None if p.refused.is_some() => "not running".to_string(),
                None => "from the member's file".to_string(),
            };
            out.push_str(&format!(
                "  {}/{}: {source}, version {}; partitions [{}], lag {}; {} messages, {:.1} msg/s, {} errors, {} traps\n",
                p.tenant,
                p.pipeline,
                p.plugin_version.as_deref().unwrap_or("-"),
                p.partitions.join(" "),
                p.lag.map_or("-".to_string(), |l| l.to_string()),
                p.messages,
                p.rate,
                p.errors,
                p.traps
            ));
            if let Some(down) = &p.down {
                out.push_str(&format!("    down: {down}\n"));
            }
            if let Some(c) = &p.canary {
                out.push_str(&format!(
                    "    canary of deploy {} on {}%: plugin {} (version {}): {}; stable: {}\n",
                    c.generation,
                    c.percent,
                    short(&c.plugin),
                    c.version,
                    render_side(&c.canary, &c.canary.rates()),
                    render_side(&c.stable, &c.stable.rates())
                ));
            }
            if let Some(w) = &p.waiting {
                out.push_str(&format!("    waiting: {w}\n"));
            }
            if let Some(r) = &p.refused {
                out.push_str(&format!(
                    "    refused deploy {} (plugin {}): {}\n",
                    r.generation,
                    short(&r.plugin),
                    r.reason
                ));
            }
        }
    }
    out
}

fn short(digest: &str) -> &str {
    let end = (PluginDigest::PREFIX.len() + 12).min(digest.len());
    &digest[..end]
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_file_then_dash_x_then_brokers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# credentials\nsecurity.protocol=SASL_PLAINTEXT\nsasl.username = shop\n\nsasl.password=a=b\n",
        )
        .unwrap();
        let args = ControlArgs {
            brokers: "k:9092".into(),
            property: vec!["sasl.username=other".into()],
            properties_file: Some(file.clone()),
            prefix: "ackbar".into(),
        };
        let p = args.properties().unwrap();
        assert_eq!(p["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(p["sasl.username"], "other", "-X wins over the file");
        assert_eq!(p["sasl.password"], "a=b", "only the first '=' splits");
        assert_eq!(p["bootstrap.servers"], "k:9092");

        std::fs::write(&file, "ok=1\nnot a property\n").unwrap();
        let e = format!("{:#}", args.properties().unwrap_err());
        assert!(
            e.contains("client.properties: line 2") && e.contains("not key=value"),
            "{e}"
        );
    }
}
