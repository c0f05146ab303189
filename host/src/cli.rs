//! The `ackbar` command line.

use crate::config::{Brokers, Config};
use crate::embedded::EmbeddedBroker;
use crate::plugin::{inspect, PluginRuntime};
use crate::policy::AckPolicy;
use crate::report::StatsSnapshot;
use crate::supervisor::{Launch, Supervised};
use crate::tenant::TenantBudget;
use crate::tools::{self, Record};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Log line format on stderr: `pretty` for people, `json` (one object per line, with the
    /// message span's fields) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
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
    /// Call a plugin with messages, without a broker, and print what each delivery did.
    Invoke(InvokeArgs),
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
        // Guest calls block (WASI output flushes enter tokio): keep them off the async workers.
        Command::Invoke(args) => tokio::task::spawn_blocking(move || invoke(args)).await?,
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

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The plugin (.wasm component).
    pub plugin: PathBuf,
    /// A message payload (repeatable). Without --message or --file, stdin is read.
    #[arg(long = "message", short = 'm')]
    pub messages: Vec<String>,
    /// Read messages from a file, one per line (`-` for stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Input lines are JSON objects: {"payload", "key", "headers": {..}, "topic", "partition",
    /// "offset", "timestamp"}; otherwise each line is a payload.
    #[arg(long)]
    pub json: bool,
    /// The ack policy that turns outcomes into actions.
    #[arg(long, default_value = "ACK", value_parser = parse_policy)]
    pub policy: AckPolicy,
    /// Deliveries per message: a redelivered (nacked) message is called again up to this many times.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Wall-clock limit per call.
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Memory limit per instance.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: u64,
    /// Print one JSON object per delivery instead of text.
    #[arg(long)]
    pub output_json: bool,
}

fn invoke(args: InvokeArgs) -> Result<()> {
    use crate::invoke::{InputMessage, Invoker};
    let mut inputs: Vec<InputMessage> = args
        .messages
        .iter()
        .map(|m| InputMessage::text(m))
        .collect();
    let read_lines = |origin: &str, reader: &mut dyn BufRead| -> Result<Vec<InputMessage>> {
        let mut read = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{origin}: line {}", i + 1))?;
            if args.json {
                if line.trim().is_empty() {
                    continue;
                }
                read.push(InputMessage::from_json_line(&line, i + 1, origin)?);
            } else {
                read.push(InputMessage::text(&line));
            }
        }
        Ok(read)
    };
    match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            inputs.extend(read_lines("stdin", &mut std::io::stdin().lock())?)
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("{}: cannot open", path.display()))?;
            let origin = path.display().to_string();
            inputs.extend(read_lines(&origin, &mut std::io::BufReader::new(file))?)
        }
        None if args.messages.is_empty() => {
            inputs.extend(read_lines("stdin", &mut std::io::stdin().lock())?)
        }
        None => {}
    }
    let limits = crate::plugin::PluginLimits {
        deadline: Duration::from_millis(args.deadline_ms),
        memory_bytes: (args.memory_mib as usize) << 20,
        fuel: None,
    };
    let runtime = PluginRuntime::new()?;
    let invoker = Invoker::new(
        &runtime,
        &args.plugin,
        args.policy,
        limits,
        args.max_attempts,
    )?;
    for (index, input) in inputs.iter().enumerate() {
        crate::plugin::block_on(invoker.deliver(index, input, |delivery| {
            if args.output_json {
                println!(
                    "{}",
                    serde_json::to_string(&delivery).expect("a delivery serializes")
                );
            } else {
                println!("{delivery}");
            }
        }));
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
    let runtime =
        PluginRuntime::with_engine(crate::plugin::default_cache_dir(), config.engine_options())
            .with_context(|| format!("{}: [engine]", config_path.display()))?;
    // Before any pipeline starts: metric handles made without a recorder stay no-ops.
    let prometheus = match &config.run.metrics_addr {
        Some(_) => Some(crate::metrics::install()?),
        None => None,
    };
    // One budget per tenant, shared by its pipelines; each pipeline under its own supervisor.
    let budgets: HashMap<&str, Arc<TenantBudget>> = config
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), TenantBudget::new(&t.name, t.limits)))
        .collect();
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

    if let (Some(addr), Some(prometheus)) = (&config.run.metrics_addr, prometheus) {
        let observed = crate::http::Observed {
            prometheus,
            pipelines: pipelines
                .iter()
                .map(|p| (p.name().to_string(), p.health()))
                .collect(),
            stall_threshold: Duration::from_millis(config.run.ready_stall_threshold_ms),
        };
        let addr = addr.parse().context("[run] metrics_addr")?;
        let bound = crate::http::serve(addr, observed).await?;
        tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
    }
    let summary_every = config.run.summary_interval_secs;
    let mut previous: Vec<StatsSnapshot> = vec![StatsSnapshot::default(); pipelines.len()];
    let mut ticker = tokio::time::interval(Duration::from_secs(summary_every.max(1)));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
            _ = signals.hangup.recv() => reload(&config_path, &pipelines).await,
            _ = ticker.tick(), if summary_every > 0 => {
                for (p, prev) in pipelines.iter().zip(previous.iter_mut()) {
                    let Some(now) = p.stats().await else {
                        tracing::info!(pipeline = p.name(), "down; restarts so far: {}", p.restarts());
                        *prev = StatsSnapshot::default();
                        continue;
                    };
                    let handled = now.messages.saturating_sub(prev.messages);
                    let rate = handled as f64 / summary_every as f64;
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
