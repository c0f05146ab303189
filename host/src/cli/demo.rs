//! `ackbar demo`: the embedded broker, a stream of sample orders, the Rust example handler, and
//! a running account of what happened to each message and which offsets were committed.

use crate::config::PipelineConfig;
use crate::consumer::Pipeline;
use crate::embedded::EmbeddedBroker;
use crate::events::DeliveryEvent;
use crate::kafka::{self, Record};
use crate::plugin::PluginRuntime;
use crate::policy::{AckPolicy, Action};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A message that failed this often under a redelivering policy counts as stalled for the demo.
const STALLED_AFTER_ATTEMPTS: u32 = 3;
const TOPIC: &str = "orders";
const GROUP: &str = "ackbar-demo";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Ack policy: MANUAL, ACK_FIRST, ACK, REJECT_ON_ERROR or NACK_ON_ERROR.
    #[arg(long, default_value = "NACK_ON_ERROR", value_parser = super::args::parse_policy)]
    pub policy: AckPolicy,
    /// Number of sample messages.
    #[arg(long, default_value_t = 12)]
    pub messages: usize,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 2)]
    pub partitions: i32,
    /// The handler component (default: the Rust orders example).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

/// The sample payload for message `i` of `n`: mostly valid orders, some malformed, some whose
/// warehouse is briefly offline, and one poison order that makes the handler panic.
fn sample(i: usize, n: usize) -> String {
    if n >= 4 && i == n - 2 {
        return format!(r#"{{"id":"o{i}","item":"poison","quantity":1}}"#);
    }
    match i % 5 {
        2 => "this is not an order".to_string(),
        3 => format!(r#"{{"id":"o{i}","item":"lamp","quantity":1,"warehouse":"offline"}}"#),
        _ => format!(r#"{{"id":"o{i}","item":"book","quantity":{}}}"#, 1 + i % 3),
    }
}

fn describe(r: &DeliveryEvent) -> String {
    format!(
        "{}/{} @{:<3} attempt {}  {} -> {}",
        r.topic,
        r.partition,
        r.offset,
        r.attempt,
        r.outcome.reason(),
        r.settled_as()
    )
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let plugin = match args.plugin {
        Some(p) => p,
        None => super::args::default_example_plugin("orders")?,
    };
    let partitions = args.partitions.max(1);
    println!("Ackbar demo: {} messages on topic '{TOPIC}' ({partitions} partitions), policy {}, plugin {}",
        args.messages, args.policy, plugin.display());

    let broker = EmbeddedBroker::start()?;
    let bootstrap = broker.bootstrap_servers().to_string();
    broker.create_topic(TOPIC, partitions)?;
    let records: Vec<Record> = (0..args.messages)
        .map(|i| Record::new((i as i32) % partitions, sample(i, args.messages)))
        .collect();
    let produced = kafka::produce(&bootstrap, TOPIC, &records).await?;
    let mut end: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for (p, o) in &produced {
        end.insert(*p, o + 1);
    }
    println!(
        "produced {} messages to the embedded broker at {bootstrap}\n",
        produced.len()
    );

    let mut config = PipelineConfig::new("demo", &[TOPIC], plugin);
    config.group_id = Some(GROUP.to_string());
    config.ack_policy = args.policy;
    config.commit_interval = Duration::from_millis(200);
    config
        .kafka
        .insert("session.timeout.ms".into(), "6000".into());
    config
        .kafka
        .insert("heartbeat.interval.ms".into(), "500".into());
    let runtime = PluginRuntime::new()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = Pipeline::start(config, &bootstrap, &runtime, Some(tx))?;

    // Per partition: offset -> (deliveries, last action).
    let mut seen: BTreeMap<i32, BTreeMap<i64, (u32, Action)>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut deliveries = 0usize;
    let finished = |seen: &BTreeMap<i32, BTreeMap<i64, (u32, Action)>>| {
        end.iter().all(|(p, &end)| {
            let Some(offsets) = seen.get(p) else {
                return end == 0;
            };
            let stalled = offsets
                .values()
                .any(|(n, a)| *a == Action::Redeliver && *n >= STALLED_AFTER_ATTEMPTS);
            stalled
                || (0..end)
                    .all(|o| matches!(offsets.get(&o), Some((_, a)) if *a != Action::Redeliver))
        })
    };
    while !finished(&seen) {
        let report = tokio::select! {
            r = rx.recv() => r,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(report) = report else {
            println!(
                "\n(timed out after {} s waiting for the handler)",
                args.timeout_secs
            );
            break;
        };
        deliveries += 1;
        println!("{}", describe(&report));
        let entry = seen
            .entry(report.partition)
            .or_default()
            .entry(report.offset)
            .or_insert((0, report.action));
        entry.0 += 1;
        entry.1 = report.action;
    }
    let stats = pipeline.shutdown().await?;

    let partition_ids: Vec<i32> = end.keys().copied().collect();
    let committed = kafka::committed_offsets(&bootstrap, GROUP, TOPIC, &partition_ids)?;
    println!("\ncommitted offsets (read back from the broker):");
    for (p, offset) in &committed {
        let end = end[p];
        let note = match seen.get(p).and_then(|o| o.iter().find(|(_, (n, a))| *a == Action::Redeliver && *n >= STALLED_AFTER_ATTEMPTS)) {
            Some((o, (n, _))) => format!("stalled at offset {o} after {n} failed attempts: it is read again on the next start"),
            None if *offset == Some(end) => "all handled".to_string(),
            None => "not all committed (as the policy says)".to_string(),
        };
        let shown = offset.map_or("none".to_string(), |o| o.to_string());
        println!("  {TOPIC}/{p}: committed {shown} of {end}  ({note})");
    }
    println!(
        "\nsummary: {} messages, {deliveries} deliveries: {} ok, {} errors, {} traps; actions: {} commit, {} redeliver, {} reject; {} offset commits",
        produced.len(), stats.ok, stats.errors, stats.traps, stats.commit_actions, stats.redeliver_actions, stats.reject_actions, stats.commits
    );
    drop(broker);
    Ok(())
}
