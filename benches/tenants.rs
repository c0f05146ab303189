//! Isolation between tenants, measured: the throughput of a well-behaved tenant alone, then beside
//! a hostile tenant running each attack without end, in one process on one broker.
//!
//! The well-behaved tenant runs the Rust `orders` handler over `BENCH_MESSAGES` (200000) orders of
//! ~1 KiB on 4 partitions, in a fresh consumer group each run; its rate is measured from its
//! first call to its last. For each attack, `BENCH_REPEATS` (5) pairs of runs alternate alone and
//! beside the hostile tenant (restarted from the first attack each time), and the medians are
//! compared: single runs on a small machine shared with the broker vary by about ±15%. The
//! tenant fetches with `fetch.wait.max.ms` 10, as the end-to-end benchmark's consumers do (see
//! `BENCH_FETCH_WAIT_MAX_MS`). The hostile tenant reads `BENCH_HOSTILE_MESSAGES` (100000) copies of one
//! attack from its own topic (ACK, 300 ms deadline, 16 MiB), started before the measurement, with
//! quotas of `BENCH_GUEST_MS` (250) ms of guest time and `BENCH_HOSTILE_RATE` (1000) messages per
//! second (0 turns one off). Attacks that burn CPU without trapping also run without quotas, to
//! show what they buy.
//!
//! `make bench-tenants` runs it on Apache Kafka (`BENCH_BROKER=embedded` for the embedded broker).

mod common;

use ackbar::config::{Backoff, PipelineConfig, TenantLimits};
use ackbar::consumer::{Pipeline, PipelineHandle};
use ackbar::embedded::EmbeddedBroker;
use ackbar::events::DeliveryEvent;
use ackbar::health::Health;
use ackbar::kafka::{self, Record};
use ackbar::plugin::{EngineOptions, PluginRuntime, PoolSizing};
use ackbar::policy::AckPolicy;
use ackbar::tenant::TenantBudget;
use ackbar_tests::broker_process::BrokerProcess;
use common::{env_or, repo_root, BENCH_FETCH_WAIT_MAX_MS};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const PARTITIONS: i32 = 4;
/// How long the hostile tenant runs before a measurement starts.
const STARTUP_BURST: Duration = Duration::from_millis(1500);
const PAYLOAD_BYTES: usize = 1024;

const ATTACKS: [&str; 18] = [
    "loop",
    "clock-loop",
    "recurse",
    "alloc:64",
    "echo:100000000",
    "big-error:4",
    "ack-many:10000",
    "interrupt-raw:7",
    "open:/etc/passwd",
    "write:/tmp/ackbar-hostile",
    "env",
    "connect:127.0.0.1:22",
    "http:127.0.0.1:9",
    "trap",
    "sleep:15000",
    "log-flood:20000",
    "big-log:8",
    "exit:0",
];

/// Attacks that keep a core busy without trapping (so the trap pause does not slow them), and a
/// flood of cheap ones.
const CPU_BOUND: [&str; 4] = ["big-error:4", "ack-many:10000", "loop", "env"];

fn component(name: &str) -> PathBuf {
    let path = repo_root()
        .join("guest-examples/rust/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is not built: run `make guests`",
        path.display()
    );
    path
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn order(i: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":"o{i}","item":"book","quantity":2,"note":""#);
    let pad = PAYLOAD_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

struct Bench {
    bootstrap: String,
    runtime: PluginRuntime,
    good_topic: String,
    good_budget: Arc<TenantBudget>,
}

struct Running {
    handle: PipelineHandle,
    reports: UnboundedReceiver<DeliveryEvent>,
}

impl Bench {
    fn start(&self, config: PipelineConfig, budget: Arc<TenantBudget>) -> Running {
        let (tx, reports) = unbounded_channel();
        let health = Arc::new(Health::default());
        let handle = Pipeline::start_in(
            config,
            &self.bootstrap,
            &self.runtime,
            Some(tx),
            budget,
            health,
        )
        .expect("pipeline starts");
        Running { handle, reports }
    }

    /// The well-behaved tenant's rate over `count` messages.
    async fn good_rate(&self, count: usize) -> f64 {
        let mut config = PipelineConfig::new(
            &unique("good"),
            &[self.good_topic.as_str()],
            component("orders"),
        );
        config.tenant = "good".into();
        config.group_id = Some(unique("good-group"));
        config.ack_policy = AckPolicy::Ack;
        config.commit_interval = Duration::from_millis(200);
        config
            .kafka
            .insert("fetch.wait.max.ms".into(), BENCH_FETCH_WAIT_MAX_MS.into());
        let mut run = self.start(config, self.good_budget.clone());
        let mut seen = Vec::with_capacity(count);
        while seen.len() < count {
            let report = tokio::time::timeout(Duration::from_secs(300), run.reports.recv())
                .await
                .expect("good tenant makes progress")
                .expect("reports");
            seen.push(report);
        }
        run.handle.shutdown().await.unwrap();
        let first = seen.iter().map(|r| r.started).min().unwrap();
        let last = seen.iter().map(|r| r.started + r.elapsed).max().unwrap();
        count as f64 / (last - first).as_secs_f64()
    }

    /// A topic holding `messages` copies of `attack`.
    async fn attack_topic(&self, attack: &str, messages: usize) -> String {
        let topic = unique("hostile");
        ackbar_tests::kafka::create_topic(&self.bootstrap, &topic, 1)
            .await
            .unwrap();
        let records: Vec<Record> = (0..messages)
            .map(|_| Record::new(0, attack.as_bytes()))
            .collect();
        for batch in records.chunks(50_000) {
            kafka::produce(&self.bootstrap, &topic, batch)
                .await
                .unwrap();
        }
        topic
    }

    /// The hostile tenant, reading `topic` from the start, under way when this returns.
    async fn hostile(&self, topic: &str, quota: Quota) -> Running {
        let mut config = PipelineConfig::new(&unique("hostile"), &[topic], component("fixture"));
        config.tenant = "hostile".into();
        config.group_id = Some(unique("hostile-group"));
        config.ack_policy = AckPolicy::Ack;
        config.limits.deadline = Duration::from_millis(300);
        config.limits.memory_bytes = 16 << 20;
        config.backoff = Backoff::default();
        config.drain_timeout = Duration::from_secs(2);
        let limits = TenantLimits {
            guest_ms_per_sec: quota.guest_ms,
            max_messages_per_sec: quota.messages,
            ..TenantLimits::default()
        };
        config.tenant_limits = limits;
        let mut run = self.start(config, TenantBudget::new("hostile", limits));
        tokio::time::timeout(Duration::from_secs(60), run.reports.recv())
            .await
            .expect("the hostile tenant starts")
            .expect("reports");
        // Steady state: the quotas' buckets start full (one second's worth), and that first
        // burst is not what a neighbour lives beside for long.
        tokio::time::sleep(STARTUP_BURST).await;
        run
    }
}

/// The hostile tenant's quotas; zero is unlimited.
#[derive(Clone, Copy)]
struct Quota {
    guest_ms: u64,
    messages: u64,
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let messages: usize = env_or("BENCH_MESSAGES", 200_000);
    let repeats: usize = env_or("BENCH_REPEATS", 5);
    let hostile_messages: usize = env_or("BENCH_HOSTILE_MESSAGES", 100_000);
    let quota = Quota {
        guest_ms: env_or("BENCH_GUEST_MS", 250),
        messages: env_or("BENCH_HOSTILE_RATE", 1000),
    };
    let unlimited = Quota {
        guest_ms: 0,
        messages: 0,
    };
    let limited = quota.guest_ms > 0 || quota.messages > 0;
    let broker_kind = std::env::var("BENCH_BROKER").unwrap_or_else(|_| "kafka".into());

    let (_process, _embedded, bootstrap) = if broker_kind == "embedded" {
        let broker = EmbeddedBroker::start().unwrap();
        let bootstrap = broker.bootstrap_servers().to_string();
        (None, Some(broker), bootstrap)
    } else {
        let process = BrokerProcess::start(&repo_root(), &broker_kind).unwrap();
        let bootstrap = process.bootstrap.clone();
        (Some(process), None, bootstrap)
    };
    let good_topic = unique("orders");
    ackbar_tests::kafka::create_topic(&bootstrap, &good_topic, PARTITIONS)
        .await
        .unwrap();
    let records: Vec<Record> = (0..messages)
        .map(|i| Record::new(i as i32 % PARTITIONS, order(i)))
        .collect();
    // In batches the producer's local queue can hold.
    for batch in records.chunks(50_000) {
        kafka::produce(&bootstrap, &good_topic, batch)
            .await
            .unwrap();
    }
    let runtime = PluginRuntime::with_engine(
        ackbar::plugin::default_cache_dir(),
        EngineOptions {
            pooling: Some(PoolSizing::for_tenants([(1, 64), (1, 64)], 64 << 20)),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let bench = Bench {
        bootstrap,
        runtime,
        good_topic,
        good_budget: TenantBudget::new("good", TenantLimits::default()),
    };

    println!(
        "tenant isolation on {broker_kind}: {messages} orders over {PARTITIONS} partitions; \
         hostile tenant with {hostile_messages} copies of each attack, quotas {} guest ms/s and {} msg/s (0: none)",
        quota.guest_ms, quota.messages
    );
    // `BENCH_ATTACKS`: a comma-separated subset.
    let only: Option<Vec<String>> = std::env::var("BENCH_ATTACKS").ok().map(|v| {
        v.split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    });
    let wanted = |attack: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == attack));
    let mut cases: Vec<(&str, Quota, bool)> = ATTACKS
        .iter()
        .filter(|a| wanted(a))
        .map(|a| (*a, quota, false))
        .collect();
    if limited {
        cases.extend(
            CPU_BOUND
                .iter()
                .filter(|a| wanted(a))
                .map(|a| (*a, unlimited, true)),
        );
    }
    println!(
        "\n| good tenant beside | alone msg/s (median) | beside msg/s (median) | beside / alone | runs alone / beside | hostile calls meanwhile |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    // Alone and beside alternate, so drift on the machine affects both sides alike.
    for (attack, quota, unquoted) in cases {
        let topic = bench.attack_topic(attack, hostile_messages).await;
        let (mut alone, mut beside, mut hostile_calls) = (Vec::new(), Vec::new(), 0);
        for _ in 0..repeats.max(1) {
            alone.push(bench.good_rate(messages).await);
            let hostile = bench.hostile(&topic, quota).await;
            beside.push(bench.good_rate(messages).await);
            hostile_calls += hostile.handle.shutdown().await.unwrap().messages;
        }
        let label = match unquoted {
            true => format!("`{attack}` (no quotas)"),
            false => format!("`{attack}`"),
        };
        let runs = |rates: &[f64]| {
            rates
                .iter()
                .map(|r| format!("{:.0}k", r / 1000.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let spread = format!("{} / {}", runs(&alone), runs(&beside));
        let (alone, beside) = (median(alone), median(beside));
        println!(
            "| {label} | {alone:.0} | {beside:.0} | {:.2} | {spread} | {hostile_calls} |",
            beside / alone
        );
    }
}
