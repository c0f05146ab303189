//! `ackbar run`: the pipelines of a config file, each under a supervisor, until SIGINT/SIGTERM;
//! SIGHUP reloads.

use crate::config::{Brokers, Config};
use crate::control::{Member, MemberLaunch};
use crate::embedded::EmbeddedBroker;
use crate::plugin::PluginRuntime;
use crate::stats::StatsSnapshot;
use crate::supervisor::{Launch, Supervised};
use crate::tenant::TenantBudget;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub async fn run(config_path: PathBuf) -> Result<()> {
    // Handlers first: a signal that arrives during startup must not kill the process.
    let mut signals = Signals::install()?;
    let config = Config::load(&config_path)?;
    let (_embedded, bootstrap) = match &config.brokers {
        Brokers::Bootstrap(b) => (None, b.clone()),
        Brokers::Embedded => {
            let broker = EmbeddedBroker::start()?;
            // The pipelines' topics, and for a member those its tenants own, which its
            // deployed pipelines read; control topics have one partition.
            let mut topics: BTreeMap<String, i32> = BTreeMap::new();
            let owned = config
                .tenants
                .iter()
                .filter(|_| config.control.is_some())
                .flat_map(|t| t.topics.iter().filter(|t| !t.ends_with('*')));
            for topic in config.pipelines.iter().flat_map(|p| &p.topics).chain(owned) {
                topics.insert(topic.clone(), config.embedded.partitions);
            }
            for topic in crate::control::control_topics(&config)? {
                topics.insert(topic, 1);
            }
            for (topic, partitions) in &topics {
                broker.create_topic(topic, *partitions)?;
            }
            let bootstrap = broker.bootstrap_servers().to_string();
            tracing::info!(
                "embedded broker listening on {bootstrap} (try: ackbar produce --brokers {bootstrap} --topic TOPIC PAYLOAD)"
            );
            (Some(broker), bootstrap)
        }
    };
    let runtime =
        PluginRuntime::with_engine(crate::plugin::default_cache_dir(), config.engine_options())
            .with_context(|| format!("{}: [engine]", config_path.display()))?;
    // Before any pipeline starts: metric handles made without a recorder stay no-ops.
    let (telemetry, otel_metrics) =
        crate::telemetry::Telemetry::start(config.telemetry.as_ref())
            .with_context(|| format!("{}: [telemetry]", config_path.display()))?;
    let listener = match &config.run.metrics_addr {
        Some(addr) => {
            let addr = addr.parse().context("[run] metrics_addr")?;
            Some(crate::ops_endpoint::bind(addr).await?)
        }
        None => None,
    };
    // Refused here, before any pipeline starts: actions open to anyone on the network.
    let console_access = match &listener {
        Some(listener) if config.run.console != crate::config::ConsoleMode::Off => Some(
            crate::console::access(
                config.run.console,
                config
                    .run
                    .console_token
                    .clone()
                    .or_else(|| std::env::var("ACKBAR_CONSOLE_TOKEN").ok()),
                listener.local_addr()?,
            )
            .with_context(|| format!("{}", config_path.display()))?,
        ),
        _ => None,
    };
    let prometheus = crate::metrics::install(listener.is_some(), otel_metrics)?;
    let ops = listener.zip(prometheus);
    // One budget per tenant, shared by its pipelines; each pipeline under its own supervisor.
    let budgets: HashMap<String, Arc<TenantBudget>> = config
        .tenants
        .iter()
        .map(|t| (t.name.clone(), TenantBudget::new(&t.name, t.limits)))
        .collect();
    let config = Arc::new(config);
    // A fleet member applies the desired state before any deployed pipeline takes partitions.
    let mut member = match &config.control {
        Some(_) => {
            let launch = MemberLaunch {
                bootstrap: bootstrap.clone(),
                runtime: runtime.clone(),
                budgets: budgets.clone(),
                backoff: config.run.restart_backoff(),
                plugins_dir: crate::plugin::default_cache_dir()
                    .unwrap_or_else(|| std::env::temp_dir().join("ackbar"))
                    .join("deployed"),
                control_topics_exist: config.brokers == Brokers::Embedded,
            };
            let mut member = Member::join(config.clone(), launch)
                .await
                .with_context(|| format!("{}: [control]", config_path.display()))?;
            member.reconcile().await;
            tracing::info!(
                member = member.id(),
                "fleet member: running what tenants deploy"
            );
            Some(member)
        }
        None => None,
    };
    let pipelines: Vec<Arc<Supervised>> = config
        .pipelines
        .iter()
        .map(|p| {
            Supervised::spawn(
                p.clone(),
                Launch {
                    bootstrap: bootstrap.clone(),
                    runtime: runtime.clone(),
                    budget: budgets[p.tenant.as_str()].clone(),
                    backoff: config.run.restart_backoff(),
                },
            )
        })
        .collect();
    let everything = |member: &Option<Member>| -> Vec<Arc<Supervised>> {
        let deployed = member.as_ref().map(Member::pipelines).unwrap_or_default();
        pipelines.iter().cloned().chain(deployed).collect()
    };
    let observed_pipelines = Arc::new(std::sync::RwLock::new(Vec::new()));
    let observed_deploys = crate::console::Deploys::default();
    let observe = |member: &Option<Member>| {
        *observed_pipelines
            .write()
            .unwrap_or_else(|e| e.into_inner()) = everything(member);
        *observed_deploys.write().unwrap_or_else(|e| e.into_inner()) =
            member.as_ref().map(Member::deploys).unwrap_or_default();
    };
    observe(&member);

    if let Some((listener, prometheus)) = ops {
        let observed = crate::ops_endpoint::Observed {
            prometheus,
            pipelines: observed_pipelines.clone(),
            stall_threshold: Duration::from_millis(config.run.ready_stall_threshold_ms),
            console: console_access.map(|access| {
                let console = crate::console::Console::new(
                    observed_pipelines.clone(),
                    access,
                    bootstrap.clone(),
                )
                .with_deploys(observed_deploys.clone());
                Arc::new(match &config.control {
                    Some(control) => console.with_fleet(crate::control::StatusTopic::new(
                        crate::control::status_topic(&control.prefix),
                        config.control_properties(&bootstrap),
                    )),
                    None => console,
                })
            }),
        };
        let console = observed.console.as_ref().map(|c| match c.access {
            crate::console::Access::ReadOnly => "read-only",
            crate::console::Access::Local => "read-write from this machine",
            crate::console::Access::Token(_) => "actions need the console token",
        });
        let bound = crate::ops_endpoint::serve(listener, observed)?;
        tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        if let Some(console) = console {
            tracing::info!("console on http://{bound}/ ({console})");
        }
    }
    if let Some(member) = &mut member {
        member.publish_status(&pipelines).await;
    }
    let summary_every = config.run.summary_interval_secs;
    let mut previous: HashMap<String, StatsSnapshot> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(summary_every.max(1)));
    ticker.tick().await;
    let (poll_every, status_every) = member.as_ref().map_or(
        (Duration::from_secs(3600), Duration::from_secs(3600)),
        |m| (m.poll_interval(), m.status_interval()),
    );
    let mut poll = tokio::time::interval(poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status = tokio::time::interval(status_every);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => reload(&config_path, &pipelines).await,
            _ = poll.tick(), if member.is_some() => {
                let Some(m) = member.as_mut() else { continue };
                if m.reconcile().await {
                    observe(&member);
                    if let Some(m) = member.as_mut() {
                        m.publish_status(&pipelines).await;
                    }
                }
            }
            _ = status.tick(), if member.is_some() => {
                if let Some(m) = member.as_mut() {
                    m.publish_status(&pipelines).await;
                }
            }
            _ = ticker.tick(), if summary_every > 0 => {
                for p in everything(&member) {
                    let prev = previous.entry(p.name().to_string()).or_default();
                    let Some(now) = p.stats().await else {
                        tracing::info!(pipeline = p.name(), "down; restarts so far: {}", p.restarts());
                        *prev = StatsSnapshot::default();
                        continue;
                    };
                    let handled = now.messages.saturating_sub(prev.messages);
                    let rate = handled as f64 / summary_every as f64;
                    tracing::info!(
                        pipeline = p.name(),
                        "{rate:.1} msg/s; total {} messages: {} ok, {} errors, {} traps, {} interrupts; actions: {} commit, {} redeliver, {} reject, {} nothing; {} offset commits ({} failed); {} messages in {} batch calls",
                        now.messages, now.ok, now.errors, now.traps, now.interrupts,
                        now.commit_actions, now.redeliver_actions, now.reject_actions, now.nothing_actions, now.commits, now.commit_errors,
                        now.batched_messages, now.batch_calls
                    );
                    *prev = now;
                }
            }
        }
    }
    tracing::info!("shutting down: draining in-flight messages and committing");
    // All at once: each waits for its drain and for the broker to take its commit and its
    // leave, which one after another adds up to minutes for hundreds of pipelines.
    let mut stopping = tokio::task::JoinSet::new();
    for p in everything(&member) {
        stopping.spawn(async move {
            let stopped = p.shutdown().await;
            (p, stopped)
        });
    }
    let mut first_error = None;
    while let Some(joined) = stopping.join_next().await {
        let (p, stopped) = joined.context("a pipeline's shutdown panicked")?;
        if let Err(e) = stopped {
            tracing::error!(pipeline = p.name(), "shutdown failed: {e:#}");
            first_error.get_or_insert(e.context(format!("pipeline '{}'", p.name())));
        }
    }
    // Gone from the fleet once its pipelines have committed and left their groups.
    if let Some(member) = &member {
        member.leave().await;
    }
    // The last spans and metrics, on a thread that may block on the collector.
    let flushed =
        tokio::task::spawn_blocking(move || telemetry.shutdown(Duration::from_secs(5))).await;
    if let Err(e) = flushed {
        tracing::warn!("OpenTelemetry shutdown: {e}");
    }
    first_error.map_or(Ok(()), Err)
}

/// SIGHUP: re-reads the config and every pipeline's plugin. A changed `plugin` path is followed;
/// other changes need a restart and are reported. Outcomes of plugin reloads are logged by the
/// reload itself; a config that no longer parses changes nothing but the plugin files.
async fn reload(config_path: &std::path::Path, pipelines: &[Arc<Supervised>]) {
    tracing::info!(
        "SIGHUP: reloading {} and the plugins",
        config_path.display()
    );
    let config = match Config::load(config_path) {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::error!("config reload refused, running pipelines unchanged: {e}");
            None
        }
    };
    for p in pipelines {
        let wanted = config
            .as_ref()
            .and_then(|c| c.pipelines.iter().find(|n| n.name == p.name()));
        p.reload(wanted).await;
    }
    if let Some(config) = &config {
        for new in &config.pipelines {
            if !pipelines.iter().any(|p| p.name() == new.name) {
                tracing::warn!(pipeline = %new.name, "new pipeline starts after a restart");
            }
        }
    }
}

/// The signals `ackbar run` reacts to: SIGINT and SIGTERM stop it gracefully, SIGHUP asks every
/// pipeline to re-read its plugin file.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}
