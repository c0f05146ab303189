//! What a member joining costs, classic group protocol against KIP-848's consumer protocol, on
//! Apache Kafka: member A consumes 8 busy partitions, member B joins, and the benchmark records
//! every delivery of both. Per round it reports the time from B's start until every partition
//! was consumed again (the end of each partition's longest pause after the join), the longest
//! pause, how many partitions paused over 100 ms, and the messages handled twice. Rounds
//! alternate the protocols; medians and the ratio are printed (`BENCH_DETAIL=1`: each
//! partition's pause too). Run with `make bench-rebalance`.

mod common;

use ackbar::config::{GroupProtocol, PipelineConfig};
use ackbar::consumer::Pipeline;
use ackbar::events::DeliveryEvent;
use ackbar::kafka::{self, Record};
use ackbar::plugin::PluginRuntime;
use ackbar::policy::{AckPolicy, Action};
use ackbar_tests::broker_process::BrokerProcess;
use anyhow::{Context, Result};
use common::{env_or, repo_root};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const PARTITIONS: i32 = 8;
/// Messages per partition: 1 ms each, so A alone is busy on every partition for longer than a
/// round lasts.
const PER_PARTITION: usize = 12_000;
/// A pause in a partition's deliveries longer than this counts as a stall.
const STALL: Duration = Duration::from_millis(100);
/// How long deliveries are recorded after the two members split the partitions.
const AFTER_SPLIT: Duration = Duration::from_secs(3);

struct Round {
    resumed_all: Duration,
    longest_pause: Duration,
    stalled: usize,
    twice: usize,
}

fn fixture() -> Result<std::path::PathBuf> {
    let path = repo_root().join("guest-examples/rust/target/wasm32-wasip2/release/fixture.wasm");
    anyhow::ensure!(
        path.is_file(),
        "{} missing: run guest-examples/rust/build.sh",
        path.display()
    );
    Ok(path)
}

/// Deliveries taken from `rx` so far, with the member that made them.
fn drain(
    rx: &mut UnboundedReceiver<DeliveryEvent>,
    member: u8,
    into: &mut Vec<(u8, DeliveryEvent)>,
) {
    while let Ok(event) = rx.try_recv() {
        into.push((member, event));
    }
}

async fn round(
    bootstrap: &str,
    runtime: &PluginRuntime,
    protocol: GroupProtocol,
    n: usize,
) -> Result<Round> {
    let topic = format!("rebalance-{}-{n}-{}", protocol.name(), std::process::id());
    ackbar_tests::kafka::create_topic(bootstrap, &topic, PARTITIONS).await?;
    let records: Vec<Record> = (0..PER_PARTITION * PARTITIONS as usize)
        .map(|i| Record::new(i as i32 % PARTITIONS, "sleep:1"))
        .collect();
    for chunk in records.chunks(50_000) {
        kafka::produce(bootstrap, &topic, chunk).await?;
    }
    let mut config = PipelineConfig::new(&format!("{topic}-p"), &[&topic], fixture()?);
    config.group_id = Some(format!("{topic}-g"));
    config.ack_policy = AckPolicy::Ack;
    config.commit_interval = Duration::from_millis(200);
    config.group_protocol = protocol;
    if protocol == GroupProtocol::Classic {
        // The test suite's settings; the consumer protocol's are the broker's (the same).
        config
            .kafka
            .insert("session.timeout.ms".into(), "6000".into());
        config
            .kafka
            .insert("heartbeat.interval.ms".into(), "500".into());
    }
    let (tx_a, mut rx_a) = tokio::sync::mpsc::unbounded_channel();
    let a = Pipeline::start(config.clone(), bootstrap, runtime, Some(tx_a))?;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while a.assigned_partitions().len() < PARTITIONS as usize || events.len() < 2_000 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "A never consumed every partition"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain(&mut rx_a, 0, &mut events);
    }
    events.clear();
    let joined = Instant::now();
    let (tx_b, mut rx_b) = tokio::sync::mpsc::unbounded_channel();
    let b = Pipeline::start(config, bootstrap, runtime, Some(tx_b))?;
    let mut split_at = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain(&mut rx_a, 0, &mut events);
        drain(&mut rx_b, 1, &mut events);
        let (on_a, on_b) = (a.assigned_partitions().len(), b.assigned_partitions().len());
        match split_at {
            None if on_a > 0 && on_b > 0 && on_a + on_b == PARTITIONS as usize => {
                split_at = Some(Instant::now())
            }
            Some(at) if at.elapsed() >= AFTER_SPLIT => break,
            _ => {}
        }
        anyhow::ensure!(
            joined.elapsed() < Duration::from_secs(120),
            "B never got partitions"
        );
    }
    b.shutdown().await?;
    a.shutdown().await?;

    let mut starts: BTreeMap<i32, Vec<Instant>> = BTreeMap::new();
    let mut handled: HashMap<(i32, i64), usize> = HashMap::new();
    for (_, event) in &events {
        starts
            .entry(event.partition)
            .or_default()
            .push(event.started);
        if event.action == Action::Commit {
            *handled.entry((event.partition, event.offset)).or_default() += 1;
        }
    }
    let (mut resumed_all, mut longest_pause, mut stalled) = (Duration::ZERO, Duration::ZERO, 0);
    for p in 0..PARTITIONS {
        let mut times = starts.remove(&p).unwrap_or_default();
        times.sort();
        // The longest pause from the join on, and when it ended.
        let (mut pause, mut resumed, mut last) = (Duration::ZERO, joined, joined);
        for t in times.into_iter().filter(|t| *t >= joined) {
            if t - last > pause {
                (pause, resumed) = (t - last, t);
            }
            last = t;
        }
        if std::env::var_os("BENCH_DETAIL").is_some() {
            println!(
                "  partition {p}: longest pause {:.0} ms, ending {:.0} ms after the join",
                pause.as_secs_f64() * 1e3,
                (resumed - joined).as_secs_f64() * 1e3
            );
        }
        resumed_all = resumed_all.max(resumed - joined);
        longest_pause = longest_pause.max(pause);
        stalled += usize::from(pause > STALL);
    }
    Ok(Round {
        resumed_all,
        longest_pause,
        stalled,
        twice: handled.values().filter(|&&n| n > 1).count(),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let broker = BrokerProcess::start(&repo_root(), "kafka").context("start Apache Kafka")?;
    let runtime = PluginRuntime::new()?;
    let mut results: BTreeMap<&str, Vec<Round>> = BTreeMap::new();
    for n in 0..rounds {
        // Alternated, so a drift of the machine falls on both.
        let order = match n % 2 {
            0 => [GroupProtocol::Classic, GroupProtocol::Consumer],
            _ => [GroupProtocol::Consumer, GroupProtocol::Classic],
        };
        for protocol in order {
            let r = round(&broker.bootstrap, &runtime, protocol, n).await?;
            println!(
                "round {n} {:8}: every partition consumed again {:6.0} ms after the join; longest pause {:6.0} ms; {} of {PARTITIONS} partitions paused > 100 ms; {} handled twice",
                protocol.name(),
                r.resumed_all.as_secs_f64() * 1e3,
                r.longest_pause.as_secs_f64() * 1e3,
                r.stalled,
                r.twice
            );
            results.entry(protocol.name()).or_default().push(r);
        }
    }
    println!("\nmedians of {rounds} rounds, 8 partitions, a second member joining a busy first:");
    println!("| protocol | consumed again after (ms) | longest pause (ms) | partitions paused > 100 ms | handled twice |");
    println!("|---|---|---|---|---|");
    let mut medians = HashMap::new();
    for (name, rs) in &results {
        let m = |f: &dyn Fn(&Round) -> f64| median(rs.iter().map(f).collect());
        let row = (
            m(&|r| r.resumed_all.as_secs_f64() * 1e3),
            m(&|r| r.longest_pause.as_secs_f64() * 1e3),
            m(&|r| r.stalled as f64),
            m(&|r| r.twice as f64),
        );
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            row.0, row.1, row.2, row.3
        );
        medians.insert(*name, row);
    }
    if let (Some(classic), Some(consumer)) = (medians.get("classic"), medians.get("consumer")) {
        println!(
            "consumer / classic: consumed again after {:.2}×, longest pause {:.2}×",
            consumer.0 / classic.0,
            consumer.1 / classic.1
        );
    }
    Ok(())
}
