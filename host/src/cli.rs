//! The `ackbar` command line.

use crate::config::{Brokers, Config};
use crate::consumer::{Pipeline, PipelineHandle};
use crate::embedded::EmbeddedBroker;
use crate::plugin::{inspect, PluginRuntime};
use crate::policy::AckPolicy;
use crate::tools::{self, Record};
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    name = "ackbar",
    version,
    about = "A WebAssembly plugin host for Kafka consumers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipelines of a config file until SIGINT/SIGTERM.
    Run {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Zero-setup demo: embedded broker, sample orders, the Rust example handler.
    Demo(crate::demo::DemoArgs),
    /// Check that a file is a handler component for this host and list what it imports.
    Check {
        /// The plugin (.wasm component).
        plugin: PathBuf,
    },
    /// Produce messages: each PAYLOAD argument, or each line of stdin when none is given.
    Produce {
        /// Bootstrap servers, e.g. 127.0.0.1:9092.
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Send every message to this partition (default: the partitioner decides by key).
        #[arg(long)]
        partition: Option<i32>,
        /// Message key.
        #[arg(long)]
        key: Option<String>,
        payloads: Vec<String>,
    },
}

pub async fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => run(config).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Check { plugin } => check(plugin),
        Command::Produce {
            brokers,
            topic,
            partition,
            key,
            payloads,
        } => {
            let payloads = if payloads.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                payloads
            };
            let records: Vec<Record> = payloads
                .into_iter()
                .map(|p| Record {
                    partition,
                    key: key.clone().map(String::into_bytes),
                    payload: p.into_bytes(),
                    headers: Vec::new(),
                })
                .collect();
            let offsets = tools::produce(&brokers, &topic, &records).await?;
            for (partition, offset) in offsets {
                println!("{topic}/{partition} @{offset}");
            }
            Ok(())
        }
    }
}

fn check(path: PathBuf) -> Result<()> {
    let runtime = PluginRuntime::new()?;
    let report = inspect(&runtime, &path)?;
    println!(
        "ok: {} implements world handler of {} (version {})",
        path.display(),
        report
            .wit_package
            .as_deref()
            .unwrap_or(crate::bindings::WIT_PACKAGE),
        report.version
    );
    println!("exports:");
    for e in &report.exports {
        println!("  {e}");
    }
    println!("imports:");
    for i in &report.imports {
        println!("  {i}");
    }
    Ok(())
}

async fn run(config_path: PathBuf) -> Result<()> {
    // Handlers first: a signal that arrives during startup must not kill the process.
    let mut signals = Signals::install()?;
    let config = Config::load(&config_path)?;
    let (_embedded, bootstrap) = match &config.brokers {
        Brokers::Bootstrap(b) => (None, b.clone()),
        Brokers::Embedded => {
            let broker = EmbeddedBroker::start()?;
            for p in &config.pipelines {
                for topic in &p.topics {
                    broker.create_topic(topic, config.embedded.partitions)?;
                }
            }
            let bootstrap = broker.bootstrap_servers().to_string();
            tracing::info!(
                "embedded broker listening on {bootstrap} (try: ackbar produce --brokers {bootstrap} --topic TOPIC PAYLOAD)"
            );
            (Some(broker), bootstrap)
        }
    };
    let runtime = PluginRuntime::new()?;
    let mut pipelines: Vec<PipelineHandle> = Vec::new();
    for p in config.pipelines.clone() {
        match Pipeline::start(p, &bootstrap, &runtime, None) {
            Ok(handle) => pipelines.push(handle),
            Err(e) => {
                for started in pipelines {
                    let _ = started.shutdown().await;
                }
                return Err(e);
            }
        }
    }

    let summary_every = config.run.summary_interval_secs;
    let mut previous: Vec<_> = pipelines.iter().map(|p| p.stats()).collect();
    let mut ticker = tokio::time::interval(Duration::from_secs(summary_every.max(1)));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => reload(&config_path, &pipelines).await,
            _ = ticker.tick(), if summary_every > 0 => {
                for (p, prev) in pipelines.iter().zip(previous.iter_mut()) {
                    let now = p.stats();
                    let rate = (now.messages - prev.messages) as f64 / summary_every as f64;
                    tracing::info!(
                        pipeline = p.name(),
                        "{rate:.1} msg/s; total {} messages: {} ok, {} errors, {} traps, {} interrupts; {} acks, {} nacks, {} rejects; {} commits ({} failed)",
                        now.messages, now.ok, now.errors, now.traps, now.interrupts,
                        now.acks, now.nacks, now.rejects, now.commits, now.commit_errors
                    );
                    *prev = now;
                }
            }
        }
    }
    tracing::info!("shutting down: draining in-flight messages and committing");
    for p in pipelines {
        p.shutdown().await?;
    }
    Ok(())
}

/// SIGHUP: re-reads the config and every pipeline's plugin. A changed `plugin` path is followed;
/// other changes need a restart and are reported. Outcomes of plugin reloads are logged by the
/// reload itself; a config that no longer parses changes nothing but the plugin files.
async fn reload(config_path: &std::path::Path, pipelines: &[PipelineHandle]) {
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
        match wanted {
            Some(new) if new.plugin != p.plugin_path() => {
                let _ = p.switch_plugin(new.plugin.clone()).await;
            }
            _ => {
                let _ = p.reload().await;
            }
        }
        if let Some(new) = wanted {
            let mut same = new.clone();
            same.plugin = p.config().plugin.clone();
            if &same != p.config() {
                tracing::warn!(
                    pipeline = p.name(),
                    "config changes other than `plugin` apply after a restart"
                );
            }
        }
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

/// Parses a policy name for clap.
pub fn parse_policy(s: &str) -> Result<AckPolicy, String> {
    s.parse()
}

/// The example plugin built by `guest-examples/rust/build.sh`, looked up from the working
/// directory and from the executable's location.
pub fn default_example_plugin(name: &str) -> Result<PathBuf> {
    let relative = PathBuf::from("guest-examples/rust/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    let mut candidates = vec![relative.clone()];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(&relative));
        }
    }
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the example plugin {} is not built: run `make demo` (or guest-examples/rust/build.sh), or pass --plugin",
        relative.display()
    )
}
