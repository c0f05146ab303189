//! `ackbar deploy`, `rollback`, `undeploy` and `status`: a tenant changes what the fleet runs
//! by writing its own control topics, then reads the members' status until every live member
//! that serves the tenant applied (or refused) the change.

use crate::control::{
    now_ms, pipelines_topic, plugins_topic, status_topic, DesiredPipeline, DesiredState,
    MemberStatus, PluginDigest, PluginStore, StatusTopic,
};
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
    /// Seconds to wait for every live member to apply the change; 0 does not wait.
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
    /// The handler component.
    pub plugin: PathBuf,
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
            status: StatusTopic::new(status_topic(&control.prefix), properties),
        })
    }

    async fn current(&self, pipeline: &str) -> Result<Option<DesiredPipeline>> {
        let desired = self.desired.clone();
        let mut all = tokio::task::spawn_blocking(move || desired.read()).await??;
        Ok(all.remove(pipeline))
    }
}

pub async fn deploy(args: DeployArgs) -> Result<()> {
    let DeployArgs {
        target,
        spec,
        plugin,
    } = args;
    let control = TenantControl::new(&target.control, &target.tenant)?;
    let bytes = std::fs::read(&plugin)
        .with_context(|| format!("plugin {}: cannot read the file", plugin.display()))?;
    let spec = match &spec {
        Some(path) => Some(read_spec(path)?),
        None => None,
    };
    // The local check and the read of what runs now are independent: both at once.
    let checked = plugin.clone();
    let check = tokio::task::spawn_blocking(move || {
        let runtime = PluginRuntime::new()?;
        inspect(&runtime, &checked)
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
    let digest = control.store.put(&bytes).await?;
    let desired = match &current {
        Some(current) => current.next(digest.clone(), spec),
        None => DesiredPipeline {
            pipeline: target.pipeline.clone(),
            plugin: digest.clone(),
            spec,
            generation: 1,
            history: vec![],
        },
    };
    control.desired.publish(&desired).await?;
    eprintln!(
        "deploy {} of tenant '{}' pipeline '{}': plugin {digest} ({} bytes)",
        desired.generation,
        target.tenant,
        target.pipeline,
        bytes.len()
    );
    wait_for(&control, &target, Some(desired.generation)).await
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
    let desired = current.next(past.plugin.clone(), past.spec.clone());
    control.desired.publish(&desired).await?;
    eprintln!(
        "deploy {} of tenant '{}' pipeline '{}': back to deploy {} (plugin {})",
        desired.generation, target.tenant, target.pipeline, past.generation, past.plugin
    );
    wait_for(&control, &target, Some(desired.generation)).await
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
    wait_for(&control, &target, None).await
}

pub async fn status(args: StatusArgs) -> Result<()> {
    let status = StatusTopic::new(
        status_topic(&args.control.prefix),
        args.control.properties()?,
    );
    let members = tokio::task::spawn_blocking(move || status.read_live()).await??;
    print!("{}", render_fleet(&members, None));
    Ok(())
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

fn applied(member: &MemberStatus, target: &TargetArgs, generation: Option<u64>) -> Applied {
    let pipeline = member.pipeline(&target.tenant, &target.pipeline);
    match (generation, pipeline) {
        (None, None) => Applied::Yes,
        (None, Some(_)) => Applied::Not,
        (Some(_), None) => Applied::Not,
        (Some(g), Some(p)) => {
            if let Some(refused) = p.refused.as_ref().filter(|r| r.generation >= g) {
                Applied::Refused(refused.reason.clone())
            } else if p.deployed.as_ref().is_some_and(|d| {
                // A newer deploy replaced it; or it runs, started with this plugin (a
                // version is the start of the digest's hex) and not one before it.
                d.generation > g
                    || (d.generation == g
                        && p.plugin_version.as_deref().is_some_and(|v| {
                            d.plugin
                                .strip_prefix(PluginDigest::PREFIX)
                                .is_some_and(|hex| hex.starts_with(v))
                        }))
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
            .map(|m| (m, applied(m, target, generation)))
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
