//! End-to-end throughput on a real broker: pre-produce N orders of ~1 KiB over 8 partitions, then
//! time each consumer from its first message until every offset is committed.
//!
//! - `raw`: a plain rdkafka consumer loop, no handler, committing every second (the limit of the
//!   broker and the client on this machine);
//! - `native`: the same loop calling the `orders` logic compiled into the process;
//! - `ackbar …`: `ackbar run` (a child process) with a Wasm handler: the Rust no-op (`fixture`)
//!   and every language's `orders`, under several policies;
//! - `faststream`: the same logic in FastStream (`benches/faststream`), on a smaller topic, since
//!   it commits once per message;
//! - `share`: a 1 ms handler on one partition, a classic group against a share group of 1, 2 and
//!   4 members; and a no-op handler, for the cost of share acknowledgements against commits;
//! - `latency`: produce → committed latency of a live stream (5,000 msg/s) through Ackbar;
//! - `enrich`: consume-transform-produce, the Rust `enrich` example forwarding every order to
//!   `<topic>.enriched`, at least once and exactly once (three transaction sizes), its live
//!   latency in both modes, and FastStream with a publisher doing the same.
//!
//! `make bench` runs it. Environment: `BENCH_MESSAGES` (200000), `BENCH_FASTSTREAM_MESSAGES`
//! (20000), `BENCH_BROKER` (`kafka`, `tansu` or `embedded`), `BENCH_CASES` (comma-separated
//! name filters), `BENCH_POLICIES` (the Rust `orders` policies after ACK: `ACK_FIRST`,
//! `NACK_ON_ERROR`), `BENCH_PERF` (a directory: profile each Ackbar case with `perf record -g`;
//! `BENCH_PERF_CALL_GRAPH=dwarf` for inclusive times of host code),
//! `BENCH_BASELINE` and `BENCH_ROUNDS` (compare with another build of `ackbar`, see [`ackbar`]),
//! `BENCH_BASELINE_EXTRA` (pipeline settings only the baseline runs get, such as `max_batch = 1`;
//! `BENCH_BASELINE` may then name this build),
//! `BENCH_ACKBAR_CPUS` (`taskset -c` list for `ackbar run`). The `pipelines` case runs
//! `BENCH_PIPELINES` (1,10,50,200) pipelines in one process over `BENCH_PIPELINES_MESSAGES`
//! (100000) orders.

mod common;

use ackbar::embedded::EmbeddedBroker;
use ackbar::kafka::{self, Record};
use ackbar_tests::broker_process::BrokerProcess;
use common::{env_or, order, repo_root, BENCH_FETCH_WAIT_MAX_MS, PAYLOAD_BYTES};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 8;
const TIMEOUT: Duration = Duration::from_secs(900);

/// The broker under test: a process (Apache Kafka, tansu) or the embedded cluster.
struct Broker {
    bootstrap: String,
    embedded: Option<EmbeddedBroker>,
    _process: Option<BrokerProcess>,
}

impl Broker {
    fn start(kind: &str) -> Self {
        if kind == "embedded" {
            let broker = EmbeddedBroker::start().unwrap();
            return Broker {
                bootstrap: broker.bootstrap_servers().to_string(),
                embedded: Some(broker),
                _process: None,
            };
        }
        let process = BrokerProcess::start(&repo_root(), kind).unwrap();
        Broker {
            bootstrap: process.bootstrap.clone(),
            embedded: None,
            _process: Some(process),
        }
    }

    /// The embedded cluster does not implement CreateTopics; real brokers get an admin request.
    async fn create_topic(&self, topic: &str, partitions: i32) {
        match &self.embedded {
            Some(embedded) => embedded.create_topic(topic, partitions).unwrap(),
            None => ackbar_tests::kafka::create_topic(&self.bootstrap, topic, partitions)
                .await
                .unwrap_or_else(|e| panic!("creating {topic}: {e:#}")),
        }
    }
}

/// Creates `topic` and fills it with `n` orders over its partitions.
async fn produce(broker: &Broker, topic: &str, n: usize, failing: bool) {
    broker.create_topic(topic, PARTITIONS).await;
    let bootstrap = broker.bootstrap.as_str();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|&i| Record {
                partition: Some(i as i32 % PARTITIONS),
                payload: order(i, failing),
                ..Record::default()
            })
            .collect();
        kafka::produce(bootstrap, topic, &records).await.unwrap();
    }
    eprintln!(
        "produced {n} messages to {topic} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One row of the table.
#[derive(Debug, Default, Clone)]
struct Row {
    case: String,
    policy: String,
    messages: usize,
    seconds: f64,
    handler_us: Option<f64>,
    handler_p50_us: Option<f64>,
    handler_p99_us: Option<f64>,
    cpu_seconds: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Sum of the group's committed offsets over the topic's partitions.
fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let partitions: Vec<i32> = (0..partitions).collect();
    kafka::committed_offsets(bootstrap, group, topic, &partitions)
        .map(|offsets| offsets.iter().map(|(_, o)| o.unwrap_or(0)).sum())
        .unwrap_or(0)
}

fn process_cpu_seconds() -> f64 {
    proc_stat(std::process::id()).0
}

/// A plain consumer loop: poll, optionally handle, store offsets, commit every second.
fn consumer_loop(
    case: &str,
    bootstrap: &str,
    topic: &str,
    n: usize,
    handle: impl Fn(&[u8]),
) -> Row {
    let group = format!("bench-{case}-{}", std::process::id());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", BENCH_FETCH_WAIT_MAX_MS)
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut handled = 0usize;
    let mut first: Option<(Instant, f64)> = None;
    let mut last_commit = Instant::now();
    let commit = |next: &HashMap<i32, i64>| {
        if next.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .unwrap();
        }
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    };
    let deadline = Instant::now() + TIMEOUT;
    while handled < n {
        assert!(
            Instant::now() < deadline,
            "{case}: timed out at {handled} of {n}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            first.get_or_insert_with(|| (Instant::now(), process_cpu_seconds()));
            handle(m.payload().unwrap_or_default());
            next.insert(m.partition(), m.offset() + 1);
            handled += 1;
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            commit(&next);
            last_commit = Instant::now();
        }
    }
    commit(&next);
    let (t0, cpu0) = first.unwrap();
    Row {
        case: case.into(),
        policy: "commit every 1 s".into(),
        messages: n,
        seconds: t0.elapsed().as_secs_f64(),
        cpu_seconds: Some(process_cpu_seconds() - cpu0),
        ..Row::default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Sum of every sample of `name` (all label sets).
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The upper bound of the histogram bucket holding quantile `q` of the handler durations.
fn handler_quantile_us(metrics: &str, q: f64) -> Option<f64> {
    let count = metric_sum(metrics, "ackbar_handler_duration_seconds_count");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("ackbar_handler_duration_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * count)
        .map(|(le, _)| le * 1e6)
}

fn proc_stat(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (cpu, proc_status(pid, "VmHWM:") / 1024.0)
}

/// A numeric field of `/proc/PID/status` (kB for the memory ones), 0 when absent.
fn proc_status(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The `ackbar` built with this benchmark.
fn this_build() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ackbar-under-bench"))
}

/// `binary run config`, logging warnings only. `BENCH_ACKBAR_CPUS=1`: on that core only, the
/// broker and the bench on the others; CPU per message is then much less disturbed by
/// scheduling.
fn spawn_ackbar(binary: &Path, config: &Path) -> std::process::Child {
    let mut command = match std::env::var("BENCH_ACKBAR_CPUS") {
        Ok(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpus]).arg(binary);
            c
        }
        Err(_) => Command::new(binary),
    };
    if std::env::var_os("BENCH_PERF").is_some() {
        // Guest functions by name in the profile.
        command.env("ACKBAR_PERF_MAP", "1");
    }
    command
        .arg("run")
        .arg(config)
        .env("ACKBAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start ackbar run")
}

/// `ackbar run` with one pipeline in a child process, stopped (SIGTERM) when dropped.
struct RunningAckbar {
    child: std::process::Child,
    metrics_addr: String,
    group: String,
    _dir: tempfile::TempDir,
}

impl RunningAckbar {
    /// `extra` is appended to the pipeline table.
    fn start(
        binary: &Path,
        case: &str,
        bootstrap: &str,
        topic: &str,
        plugin: &Path,
        policy: &str,
        extra: &str,
    ) -> Self {
        let group = unique_group(case);
        Self::start_in(binary, &group, bootstrap, topic, plugin, policy, extra)
    }

    /// Like [`start`](Self::start), as a member of `group` (share groups: many members).
    fn start_in(
        binary: &Path,
        group: &str,
        bootstrap: &str,
        topic: &str,
        plugin: &Path,
        policy: &str,
        extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        // An `extra` with a `kafka` table of its own replaces the bench's.
        let kafka = if extra.contains("kafka =") {
            String::new()
        } else {
            format!("kafka = {{ \"fetch.wait.max.ms\" = \"{BENCH_FETCH_WAIT_MAX_MS}\" }}")
        };
        let config = format!(
            "brokers = \"{bootstrap}\"\n[run]\nsummary_interval_secs = 0\nmetrics_addr = \"{metrics_addr}\"\n\
             [[pipeline]]\nname = \"bench\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\n\
             ack_policy = \"{policy}\"\nplugin = \"{}\"\nwatch_plugin = false\ncommit_interval_ms = 200\n{kafka}\n{extra}\n\
             [pipeline.backoff]\ninitial_ms = 1\nmax_ms = 10\nmultiplier = 2.0\n",
            plugin.display()
        );
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, config).unwrap();
        let child = spawn_ackbar(binary, &path);
        RunningAckbar {
            child,
            metrics_addr,
            group: group.to_string(),
            _dir: dir,
        }
    }
}

/// A group name of its own for one run of `case`.
fn unique_group(case: &str) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "bench-{}-{}-{run}",
        std::process::id(),
        case.replace([' ', ',', '='], "-")
    )
}

/// `members` `ackbar run` processes in one share group on `input`'s topic, from the first
/// handled message until the broker applied an acknowledgement of every record (counted from
/// the members' metrics). CPU is the members' together.
fn share_group_run(
    case: &str,
    bootstrap: &str,
    input: &Input,
    plugin: &Path,
    members: usize,
    extra: &str,
) -> Row {
    let group = unique_group(case);
    let extra = format!("group_type = \"share\"\n{extra}");
    let running: Vec<RunningAckbar> = (0..members)
        .map(|_| {
            RunningAckbar::start_in(
                this_build(),
                &group,
                bootstrap,
                input.topic,
                plugin,
                "ACK",
                &extra,
            )
        })
        .collect();
    let sum = |name: &str, kind: Option<&str>| -> f64 {
        running
            .iter()
            .filter_map(|r| http_get(&r.metrics_addr, "/metrics"))
            .map(|m| match kind {
                None => metric_sum(&m, name),
                Some(kind) => m
                    .lines()
                    .filter(|l| l.starts_with(name) && l.contains(&format!("kind=\"{kind}\"")))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum(),
            })
            .sum()
    };
    let deadline = Instant::now() + TIMEOUT;
    let t0 = loop {
        assert!(Instant::now() < deadline, "{case}: no message handled");
        if sum("ackbar_messages_total", None) > 0.0 {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let cpu = || -> f64 { running.iter().map(|r| proc_stat(r.child.id()).0).sum() };
    let cpu0 = cpu();
    // The first member stands for the others.
    let profile = Profile::start(case, "ACK", running[0].child.id());
    while sum("ackbar_share_acknowledged_total", Some("accept")) < input.messages as f64 {
        assert!(Instant::now() < deadline, "{case}: not all acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(profile);
    let cpu_seconds = cpu() - cpu0;
    let rss = running
        .iter()
        .map(|r| proc_stat(r.child.id()).1)
        .fold(0.0, f64::max);
    let calls = sum("ackbar_handler_duration_seconds_count", None);
    let total = sum("ackbar_handler_duration_seconds_sum", None);
    drop(running);
    Row {
        case: case.into(),
        policy: "ACK".into(),
        messages: input.messages,
        seconds,
        handler_us: (calls > 0.0).then(|| total / calls * 1e6),
        cpu_seconds: Some(cpu_seconds),
        peak_rss_mb: Some(rss),
        ..Row::default()
    }
}

impl Drop for RunningAckbar {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Latency from producing a message until its offset is committed, with Ackbar already running
/// and messages produced at a steady `rate` (per second): what a live stream sees. Resolution:
/// the committed offsets are polled every 5 ms; the commit interval is 200 ms.
/// `outputs`: when given, the pipeline forwards to `<topic>.enriched` with these extra pipeline
/// lines (`{out}` is replaced by that topic).
fn commit_latency(
    broker: &Broker,
    runtime: &tokio::runtime::Runtime,
    plugin: &Path,
    outputs: Option<&str>,
    n: usize,
    rate: usize,
) -> (f64, f64, f64) {
    use std::sync::{Arc, Mutex};
    let bootstrap = broker.bootstrap.as_str();
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let topic = format!("bench-latency-{}-{run}", std::process::id());
    runtime.block_on(broker.create_topic(&topic, PARTITIONS));
    let extra = match outputs {
        Some(lines) => {
            let out = format!("{topic}.enriched");
            runtime.block_on(broker.create_topic(&out, PARTITIONS));
            lines.replace("{out}", &out)
        }
        None => String::new(),
    };
    let running = RunningAckbar::start(
        this_build(),
        "latency",
        bootstrap,
        &topic,
        plugin,
        "ACK",
        &extra,
    );
    // Wait until the pipeline has its partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&running.metrics_addr, "/readyz").is_none_or(|b| !b.starts_with("ready")) {
        assert!(Instant::now() < deadline, "latency: pipeline not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    // (partition, offset, when it was sent), filled by the producer as deliveries confirm.
    let sent: Arc<Mutex<Vec<(i32, i64, Instant)>>> = Arc::default();
    let producer_sent = sent.clone();
    let bootstrap_owned = bootstrap.to_string();
    let topic_owned = topic.clone();
    let batch = (rate / 100).max(1);
    let producer = runtime.spawn(async move {
        use rdkafka::producer::FutureRecord;
        let producer = kafka::producer(&bootstrap_owned).unwrap();
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let mut deliveries = Vec::new();
        let mut i = 0;
        while i < n {
            ticker.tick().await;
            let at = Instant::now();
            for j in i..(i + batch).min(n) {
                let payload = order(j, false);
                let record = FutureRecord::<(), [u8]>::to(&topic_owned)
                    .partition(j as i32 % PARTITIONS)
                    .payload(&payload);
                let delivery = producer.send_result(record).map_err(|(e, _)| e).unwrap();
                let sent = producer_sent.clone();
                deliveries.push(tokio::spawn(async move {
                    if let Ok(Ok(d)) = delivery.await {
                        sent.lock().unwrap().push((d.partition, d.offset, at));
                    }
                }));
            }
            i = (i + batch).min(n);
        }
        for d in deliveries {
            let _ = d.await;
        }
        started.elapsed()
    });
    // One client for all the polls: creating one per poll would cost more than the resolution.
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &running.group)
        .set("enable.auto.commit", "false")
        // Committed offsets as they are now: a read_committed client's fetch would wait for the
        // transactions in flight (KIP-447), and measure its own retries.
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut all_partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        all_partitions.add_partition(&topic, p);
    }
    let mut latencies = Vec::with_capacity(n);
    let mut done: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while latencies.len() < n {
        assert!(Instant::now() < deadline, "latency: not all committed");
        std::thread::sleep(Duration::from_millis(5));
        let committed: Vec<(i32, Option<i64>)> = watcher
            .committed_offsets(all_partitions.clone(), Duration::from_secs(5))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => (e.partition(), Some(o)),
                        _ => (e.partition(), None),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let now = Instant::now();
        let mut sent = sent.lock().unwrap();
        for (partition, offset) in committed {
            if let Some(offset) = offset {
                done.insert(partition, offset);
            }
        }
        sent.retain(|(p, o, at)| {
            let committed = done.get(p).is_some_and(|c| o < c);
            if committed {
                latencies.push(now.duration_since(*at).as_secs_f64() * 1e3);
            }
            !committed
        });
    }
    let producing = runtime.block_on(producer).unwrap();
    drop(running);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    // The rate actually reached.
    let _ = rate;
    (n as f64 / producing.as_secs_f64(), at(0.5), at(0.99))
}

/// What `ackbar run` consumes in one case.
struct Input<'a> {
    topic: &'a str,
    partitions: i32,
    messages: usize,
}

/// `ackbar run` with one pipeline; timed from its first handled message (seen in `/metrics`)
/// until the group has committed all the messages. `extra` is appended to the pipeline table.
///
/// `BENCH_BASELINE=PATH` (another build of `ackbar`): each case runs `BENCH_ROUNDS` (1) times with
/// that binary and with this one (A B, B A, …), and the rows of both are returned, the
/// baseline's marked; [`compare`] prints the ratios.
fn ackbar(
    case: &str,
    bootstrap: &str,
    input: &Input,
    plugin: &Path,
    policy: &str,
    extra: &str,
) -> Vec<Row> {
    let this = this_build();
    let Ok(baseline) = std::env::var("BENCH_BASELINE") else {
        return vec![ackbar_run(
            this, case, bootstrap, input, plugin, policy, extra,
        )];
    };
    let rounds: usize = env_or("BENCH_ROUNDS", 1);
    let baseline_extra = format!(
        "{extra}\n{}",
        std::env::var("BENCH_BASELINE_EXTRA").unwrap_or_default()
    );
    let mut rows = Vec::new();
    for round in 0..rounds {
        // A B, then B A: neither build always runs on a broker that is less warmed up.
        let order = match round % 2 {
            0 => [true, false],
            _ => [false, true],
        };
        for baseline_first in order {
            let (binary, extra) = match baseline_first {
                true => (Path::new(&baseline), baseline_extra.as_str()),
                false => (this, extra),
            };
            let mut row = ackbar_run(binary, case, bootstrap, input, plugin, policy, extra);
            if baseline_first {
                row.case = format!("{case} {BASELINE_MARK}");
            }
            rows.push(row);
        }
    }
    rows
}

const BASELINE_MARK: &str = "[baseline]";

/// With `BENCH_BASELINE`: this build against the baseline, per case and policy, as the ratio of
/// summed rates and of summed CPU seconds over the rounds.
fn compare(rows: &[Row]) {
    let mut seen = Vec::new();
    for row in rows.iter().filter(|r| r.case.ends_with(BASELINE_MARK)) {
        let case = row.case.trim_end_matches(BASELINE_MARK).trim_end();
        if seen.contains(&(case, &row.policy)) {
            continue;
        }
        seen.push((case, &row.policy));
        let sums = |baseline: bool| {
            rows.iter()
                .filter(|r| r.policy == row.policy)
                .filter(|r| match baseline {
                    true => r.case == row.case,
                    false => r.case == case,
                })
                .fold((0.0, 0.0), |(rate, cpu), r| {
                    (rate + r.rate(), cpu + r.cpu_seconds.unwrap_or(0.0))
                })
        };
        let ((rate_a, cpu_a), (rate_b, cpu_b)) = (sums(true), sums(false));
        println!(
            "- this build / baseline, {case}, {}: msgs/s {:.2}×, CPU s {:.2}×",
            row.policy,
            rate_b / rate_a,
            cpu_b / cpu_a
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn ackbar_run(
    binary: &Path,
    case: &str,
    bootstrap: &str,
    input: &Input,
    plugin: &Path,
    policy: &str,
    extra: &str,
) -> Row {
    let (topic, n) = (input.topic, input.messages);
    let running = RunningAckbar::start(binary, case, bootstrap, topic, plugin, policy, extra);
    let (child, metrics_addr, group) = (&running.child, &running.metrics_addr, &running.group);
    let deadline = Instant::now() + TIMEOUT;
    let t0 = loop {
        assert!(Instant::now() < deadline, "{case}: no message handled");
        if let Some(m) = http_get(metrics_addr, "/metrics") {
            if metric_sum(&m, "ackbar_messages_total") > 0.0 {
                break Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (cpu0, _) = proc_stat(child.id());
    let profile = Profile::start(case, policy, child.id());
    while committed_total(bootstrap, group, topic, input.partitions) < n as i64 {
        assert!(Instant::now() < deadline, "{case}: not all committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(profile);
    let metrics = http_get(metrics_addr, "/metrics").unwrap_or_default();
    let (cpu1, rss) = proc_stat(child.id());
    drop(running);
    // Instance churn and batch sizes, which the table does not show.
    let instances = metric_sum(&metrics, "ackbar_instances_created_total");
    let traps = metric_sum(&metrics, "ackbar_traps_total");
    let batch_calls = metric_sum(&metrics, "ackbar_batch_calls_total");
    let batched = metric_sum(&metrics, "ackbar_batched_messages_total");
    println!(
        "{case}, {policy}: {instances} instances created, {traps} traps; {batched} messages in {batch_calls} handle-batch calls ({:.1} each)",
        batched / batch_calls.max(1.0)
    );
    let calls = metric_sum(&metrics, "ackbar_handler_duration_seconds_count");
    let total = metric_sum(&metrics, "ackbar_handler_duration_seconds_sum");
    Row {
        case: case.into(),
        policy: policy.into(),
        messages: n,
        seconds,
        handler_us: (calls > 0.0).then(|| total / calls * 1e6),
        handler_p50_us: handler_quantile_us(&metrics, 0.5),
        handler_p99_us: handler_quantile_us(&metrics, 0.99),
        cpu_seconds: Some(cpu1 - cpu0),
        peak_rss_mb: Some(rss),
    }
}

/// What OpenTelemetry costs the Rust `orders` case under ACK: tracing off, traces sampled at
/// 0.01 and at 1.0, and metrics exported every second, against a receiver in this process that
/// decodes what it gets. `BENCH_ROUNDS` (2) rounds, the order rotated each round; prints each
/// variant's summed rate and CPU seconds as a ratio of the off runs'. Only with
/// `BENCH_CASES=tracing`.
fn tracing_cost(bootstrap: &str, input: &Input) -> Vec<Row> {
    let Some(plugin) = example("rust") else {
        eprintln!("skipping tracing: the Rust orders example is not built (make guests)");
        return Vec::new();
    };
    let receiver = ackbar_tests::otlp::OtlpReceiver::start_counting().expect("OTLP receiver");
    let telemetry = |rest: &str| {
        format!(
            "\n[telemetry]\nendpoint = \"{}\"\n{rest}\n",
            receiver.endpoint
        )
    };
    let variants = [
        ("off", String::new()),
        (
            "traces 0.01",
            telemetry("sample_ratio = 0.01\nmetrics = false"),
        ),
        (
            "traces 1.0",
            telemetry("sample_ratio = 1.0\nmetrics = false"),
        ),
        (
            "metrics 1 s",
            telemetry("traces = false\nmetrics_interval_ms = 1000"),
        ),
    ];
    let rounds: usize = env_or("BENCH_ROUNDS", 2);
    let mut rows = Vec::new();
    for round in 0..rounds {
        for i in 0..variants.len() {
            let (label, extra) = &variants[(i + round) % variants.len()];
            let before = receiver.span_count();
            let case = format!("ackbar rust orders, {label}");
            let row = ackbar_run(this_build(), &case, bootstrap, input, &plugin, "ACK", extra);
            println!("{case}: {} spans received", receiver.span_count() - before);
            rows.push(row);
        }
    }
    let sums = |label: &str| {
        rows.iter()
            .filter(|r| r.case.ends_with(label))
            .fold((0.0, 0.0), |(rate, cpu), r| {
                (rate + r.rate(), cpu + r.cpu_seconds.unwrap_or(0.0))
            })
    };
    let (off_rate, off_cpu) = sums("off");
    for (label, _) in &variants[1..] {
        let (rate, cpu) = sums(label);
        println!(
            "- tracing cost, {label} / off: msgs/s {:.3}×, CPU s {:.3}×",
            rate / off_rate,
            cpu / off_cpu
        );
    }
    rows
}

/// One run of [`pipelines`].
struct ManyPipelines {
    count: usize,
    messages: usize,
    ready_seconds: f64,
    rss_mb: f64,
    threads: usize,
    rate: f64,
    shutdown_seconds: f64,
}

/// `ackbar run` with `count` pipelines, one topic of one partition each, `total` orders spread
/// over them: time to `/readyz`, memory and threads then, the rate from the first handled message
/// until all are handled, and how long SIGTERM takes to end the process (after every offset is
/// committed).
fn pipelines(
    broker: &Broker,
    runtime: &tokio::runtime::Runtime,
    plugin: &Path,
    count: usize,
    total: usize,
) -> ManyPipelines {
    let bootstrap = broker.bootstrap.as_str();
    let id = std::process::id();
    let per = total / count;
    let names: Vec<String> = (0..count)
        .map(|i| format!("bench-pipelines-{id}-{count}-{i}"))
        .collect();
    runtime.block_on(async {
        for topic in &names {
            broker.create_topic(topic, 1).await;
            let records: Vec<Record> = (0..per)
                .map(|i| Record {
                    partition: Some(0),
                    payload: order(i, false),
                    ..Record::default()
                })
                .collect();
            kafka::produce(bootstrap, topic, &records).await.unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut config = format!(
        "brokers = \"{bootstrap}\"\n[run]\nsummary_interval_secs = 0\nmetrics_addr = \"{metrics_addr}\"\n"
    );
    for name in &names {
        config.push_str(&format!(
            "[[pipeline]]\nname = \"{name}\"\ntopics = [\"{name}\"]\ngroup_id = \"{name}\"\n\
             ack_policy = \"ACK\"\nplugin = \"{}\"\nwatch_plugin = false\n",
            plugin.display()
        ));
    }
    let path = dir.path().join("pipelines.toml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut child = spawn_ackbar(this_build(), &path);
    let deadline = Instant::now() + TIMEOUT;
    let handled = |metrics: &str| metric_sum(metrics, "ackbar_messages_total");
    let mut first: Option<Instant> = None;
    loop {
        assert!(Instant::now() < deadline, "{count} pipelines: not ready");
        let ready = http_get(&metrics_addr, "/readyz").is_some_and(|b| b.starts_with("ready"));
        if first.is_none() && http_get(&metrics_addr, "/metrics").is_some_and(|m| handled(&m) > 0.0)
        {
            first = Some(Instant::now());
        }
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready_seconds = started.elapsed().as_secs_f64();
    let rss_mb = proc_status(child.id(), "VmRSS:") / 1024.0;
    let threads = proc_status(child.id(), "Threads:") as usize;
    let all = (per * count) as f64;
    let rate = loop {
        assert!(
            Instant::now() < deadline,
            "{count} pipelines: not all handled"
        );
        let metrics = http_get(&metrics_addr, "/metrics").unwrap_or_default();
        let now = handled(&metrics);
        if first.is_none() && now > 0.0 {
            first = Some(Instant::now());
        }
        if now >= all {
            break all / first.expect("handled").elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for name in &names {
        while committed_total(bootstrap, name, name, 1) < per as i64 {
            assert!(Instant::now() < deadline, "{name}: not all committed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let stopping = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "{count} pipelines: ackbar run exited with {exit}"
    );
    ManyPipelines {
        count,
        messages: per * count,
        ready_seconds,
        rss_mb,
        threads,
        rate,
        shutdown_seconds: stopping.elapsed().as_secs_f64(),
    }
}

/// `BENCH_PERF=DIR`: a `perf record -g` of the `ackbar run` process over the timed window of
/// each case, written to `DIR/<case>-<policy>.data` (`perf report -i` it).
/// `BENCH_PERF_CALL_GRAPH=dwarf` unwinds with DWARF instead of frame pointers, which the
/// release build of the host omits: slower to record, but its inclusive times are right.
struct Profile(Option<std::process::Child>);

impl Profile {
    fn start(case: &str, policy: &str, pid: u32) -> Self {
        let Ok(dir) = std::env::var("BENCH_PERF") else {
            return Profile(None);
        };
        let name = format!("{case}-{policy}").replace([' ', '/', ','], "-");
        let out = Path::new(&dir).join(format!("{name}.data"));
        let call_graph = std::env::var("BENCH_PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".into());
        let frequency = if call_graph == "fp" { "1999" } else { "499" };
        let perf = Command::new("perf")
            .args(["record", "-F", frequency, "--call-graph", &call_graph])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match perf {
            Ok(child) => Profile(Some(child)),
            Err(e) => {
                eprintln!("BENCH_PERF: cannot run perf: {e}");
                Profile(None)
            }
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(mut perf) = self.0.take() {
            // SIGINT: perf writes its file and exits.
            let _ = Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status();
            let _ = perf.wait();
        }
    }
}

fn faststream(
    bootstrap: &str,
    topic: &str,
    n: usize,
    policy: &str,
    publish: Option<&str>,
) -> Option<Row> {
    let group = format!(
        "bench-faststream-{policy}-{}-{}",
        publish.is_some(),
        std::process::id()
    );
    let output = Command::new("bash")
        .arg(repo_root().join("benches/faststream/run.sh"))
        .args([
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--group",
            &group,
        ])
        .args(["--messages", &n.to_string(), "--policy", policy])
        .args(publish.iter().flat_map(|out| ["--publish", out]))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("faststream {policy} failed");
        return None;
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(line.lines().last()?.trim()).ok()?;
    Some(Row {
        case: format!(
            "faststream {}{}",
            result["faststream_version"].as_str().unwrap_or(""),
            if publish.is_some() {
                " enrich (publisher)"
            } else {
                ""
            }
        ),
        policy: policy.into(),
        messages: n,
        seconds: result["seconds"].as_f64()?,
        cpu_seconds: result["cpu_seconds"].as_f64(),
        peak_rss_mb: result["peak_rss_mb"].as_f64(),
        ..Row::default()
    })
}

fn example(language: &str) -> Option<PathBuf> {
    let path = repo_root().join(format!("guest-examples/{language}/target/orders.wasm"));
    path.is_file().then_some(path)
}

fn print_table(rows: &[Row]) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("—".into(), |v| format!("{v:.digits$}"));
    println!("| case | policy | messages | seconds | msgs/s | MB/s | handler µs (mean / p50≤ / p99≤) | CPU s | peak RSS MB |");
    println!("|---|---|---:|---:|---:|---:|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} | {} / {} / {} | {} | {} |",
            r.case,
            r.policy,
            r.messages,
            r.seconds,
            r.rate(),
            r.rate() * PAYLOAD_BYTES as f64 / 1e6,
            opt(r.handler_us, 1),
            opt(r.handler_p50_us, 0),
            opt(r.handler_p99_us, 0),
            opt(r.cpu_seconds, 1),
            opt(r.peak_rss_mb, 0),
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let n: usize = env_or("BENCH_MESSAGES", 200_000);
    let n_faststream: usize = env_or("BENCH_FASTSTREAM_MESSAGES", 20_000);
    let broker_kind: String = env_or("BENCH_BROKER", "kafka".to_string());
    let filters: Vec<String> = std::env::var("BENCH_CASES")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let wanted =
        |case: &str| filters.is_empty() || filters.iter().any(|f| case.contains(f.as_str()));
    // The Rust `orders` case runs ACK, then these (all by default).
    let policies: Option<Vec<String>> = std::env::var("BENCH_POLICIES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let wanted_policy = |policy: &str| {
        policies
            .as_ref()
            .is_none_or(|p| p.iter().any(|p| p == policy))
    };

    let broker = Broker::start(&broker_kind);
    let bootstrap = broker.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = std::process::id();
    let clean = format!("bench-orders-{id}");
    let failing = format!("bench-orders-5pct-{id}");
    let small = format!("bench-orders-faststream-{id}");
    let create = |topic: &str, count: usize, fail: bool| {
        runtime.block_on(produce(&broker, topic, count, fail));
    };
    create(&clean, n, false);
    if wanted("5%") {
        create(&failing, n, true);
    }
    if wanted("faststream") || wanted("enrich") {
        create(&small, n_faststream, false);
    }

    let all = Input {
        topic: &clean,
        partitions: PARTITIONS,
        messages: n,
    };
    let mut rows = Vec::new();
    let mut many_pipelines: Vec<ManyPipelines> = Vec::new();
    if wanted("raw") {
        rows.push(consumer_loop(
            "raw rdkafka loop (no handler)",
            &bootstrap,
            &clean,
            n,
            |_| {},
        ));
    }
    if wanted("native") {
        rows.push(consumer_loop(
            "native orders::process",
            &bootstrap,
            &clean,
            n,
            |p| {
                std::hint::black_box(orders::process(p, 1));
            },
        ));
    }
    let fixture = repo_root().join("guest-examples/rust/target/wasm32-wasip2/release/fixture.wasm");
    if wanted("no-op") {
        rows.extend(ackbar(
            "ackbar rust no-op",
            &bootstrap,
            &all,
            &fixture,
            "ACK",
            "",
        ));
    }
    for language in ["rust", "go", "js", "python"] {
        let case = format!("ackbar {language} orders");
        let Some(plugin) = example(language) else {
            eprintln!("skipping {case}: not built (make guests)");
            continue;
        };
        if !wanted(&case) {
            continue;
        }
        rows.extend(ackbar(&case, &bootstrap, &all, &plugin, "ACK", ""));
        if language == "rust" {
            if wanted_policy("ACK_FIRST") {
                rows.extend(ackbar(&case, &bootstrap, &all, &plugin, "ACK_FIRST", ""));
            }
            if wanted_policy("NACK_ON_ERROR") {
                rows.extend(ackbar(
                    &case,
                    &bootstrap,
                    &all,
                    &plugin,
                    "NACK_ON_ERROR",
                    "",
                ));
            }
            if wanted("5%") {
                let input = Input {
                    topic: &failing,
                    ..all
                };
                let mut fail_rows = ackbar(&case, &bootstrap, &input, &plugin, "NACK_ON_ERROR", "");
                for row in &mut fail_rows {
                    row.policy = "NACK_ON_ERROR, 5% fail twice".into();
                }
                rows.extend(fail_rows);
            }
        }
    }
    if filters.iter().any(|f| f == "tracing") {
        rows.extend(tracing_cost(&bootstrap, &all));
    }
    if wanted("enrich") {
        // Consume-transform-produce: every order forwarded, enriched, to `<topic>.enriched`.
        let plugin = repo_root().join("guest-examples/rust/target/enrich.wasm");
        let out = format!("{clean}.enriched");
        runtime.block_on(broker.create_topic(&out, PARTITIONS));
        let outputs = format!("outputs = [\"{out}\"]");
        let exactly_once = |max_messages: usize, max_ms: u64| {
            format!(
                "{outputs}\ndelivery = \"exactly-once\"\n[pipeline.transaction]\nmax_messages = {max_messages}\nmax_ms = {max_ms}"
            )
        };
        let cases = [
            (
                "ackbar rust enrich at-least-once".to_string(),
                outputs.clone(),
            ),
            (
                "ackbar rust enrich exactly-once (100 msgs / 100 ms)".to_string(),
                exactly_once(100, 100),
            ),
            (
                "ackbar rust enrich exactly-once (500 msgs / 100 ms, default)".to_string(),
                exactly_once(500, 100),
            ),
            (
                "ackbar rust enrich exactly-once (2000 msgs / 500 ms)".to_string(),
                exactly_once(2000, 500),
            ),
        ];
        for (case, extra) in cases {
            rows.extend(ackbar(&case, &bootstrap, &all, &plugin, "ACK", &extra));
        }
    }
    if wanted("pipelines") {
        // One process, N pipelines of one topic of one partition each, the Rust `orders`
        // plugin, ACK; the same messages in all, spread over the topics.
        let total: usize = env_or("BENCH_PIPELINES_MESSAGES", 100_000);
        let counts: String = env_or("BENCH_PIPELINES", "1,10,50,200".to_string());
        let plugin = repo_root().join("guest-examples/rust/target/orders.wasm");
        for count in counts
            .split(',')
            .filter_map(|c| c.trim().parse::<usize>().ok())
        {
            many_pipelines.push(pipelines(&broker, &runtime, &plugin, count, total));
        }
    }
    if wanted("ordering") {
        // A handler that waits 1 ms (for a database, say), 100 distinct keys, one partition.
        let topic = format!("bench-ordering-{id}");
        let n_ordering: usize = env_or("BENCH_ORDERING_MESSAGES", 3000);
        runtime.block_on(async {
            broker.create_topic(&topic, 1).await;
            let records: Vec<Record> = (0..n_ordering)
                .map(|i| Record {
                    partition: Some(0),
                    key: Some(format!("customer-{}", i % 100).into_bytes()),
                    payload: b"sleep:1".to_vec(),
                    ..Record::default()
                })
                .collect();
            kafka::produce(&bootstrap, &topic, &records).await.unwrap();
        });
        let input = Input {
            topic: &topic,
            partitions: 1,
            messages: n_ordering,
        };
        for (name, extra) in [
            ("1 ms handler, 1 partition, ordering = partition", ""),
            (
                "1 ms handler, 1 partition, ordering = key (100 keys), max_in_flight = 64",
                "ordering = \"key\"\nmax_in_flight = 64",
            ),
        ] {
            rows.extend(ackbar(name, &bootstrap, &input, &fixture, "ACK", extra));
        }
    }
    if wanted("share") {
        // Kafka queues: a 1 ms handler on one partition, where a classic group has one useful
        // member and a share group as many as it is given; then a no-op handler, for the cost
        // of a share acknowledgement against a commit.
        for (handler, n) in [
            ("sleep:1", env_or("BENCH_SHARE_MESSAGES", 3000)),
            ("ok", env_or("BENCH_SHARE_NOOP_MESSAGES", 50_000)),
        ] {
            let topic = format!("bench-share-{}-{id}", handler.replace(':', "-"));
            runtime.block_on(async {
                broker.create_topic(&topic, 1).await;
                let records: Vec<Record> =
                    (0..n).map(|_| Record::new(0, handler.as_bytes())).collect();
                kafka::produce(&bootstrap, &topic, &records).await.unwrap();
            });
            let input = Input {
                topic: &topic,
                partitions: 1,
                messages: n,
            };
            let label = if handler == "ok" { "no-op" } else { "1 ms" };
            rows.extend(ackbar(
                &format!("{label} handler, 1 partition, classic group"),
                &bootstrap,
                &input,
                &fixture,
                "ACK",
                "",
            ));
            let members: &[usize] = if handler == "ok" { &[1] } else { &[1, 2, 4] };
            for &m in members {
                rows.push(share_group_run(
                    &format!("{label} handler, 1 partition, share group, {m} member(s), max_in_flight = 1"),
                    &bootstrap,
                    &input,
                    &fixture,
                    m,
                    "max_in_flight = 1",
                ));
            }
            rows.push(share_group_run(
                &format!("{label} handler, 1 partition, share group, 1 member, max_in_flight = 16"),
                &bootstrap,
                &input,
                &fixture,
                1,
                "max_in_flight = 16",
            ));
        }
    }
    let n_latency = env_or("BENCH_LATENCY_MESSAGES", 20_000);
    let latency = if wanted("latency") {
        let plugin = example("rust").expect("the Rust orders example");
        Some(commit_latency(
            &broker, &runtime, &plugin, None, n_latency, 5_000,
        ))
    } else {
        None
    };
    let mut enrich_latency = Vec::new();
    if wanted("enrich") {
        let plugin = repo_root().join("guest-examples/rust/target/enrich.wasm");
        for (name, lines) in [
            ("at-least-once", "outputs = [\"{out}\"]"),
            (
                "exactly-once",
                "outputs = [\"{out}\"]\ndelivery = \"exactly-once\"",
            ),
        ] {
            let measured =
                commit_latency(&broker, &runtime, &plugin, Some(lines), n_latency, 5_000);
            enrich_latency.push((name, measured));
        }
    }
    if wanted("faststream") {
        for policy in ["ACK", "ACK_FIRST"] {
            rows.extend(faststream(&bootstrap, &small, n_faststream, policy, None));
        }
    }
    if wanted("faststream") || wanted("enrich") {
        let out = format!("{small}.enriched");
        runtime.block_on(broker.create_topic(&out, PARTITIONS));
        rows.extend(faststream(
            &bootstrap,
            &small,
            n_faststream,
            "ACK",
            Some(&out),
        ));
    }

    println!(
        "\nbroker: {broker_kind}; {n} messages of {PAYLOAD_BYTES} B over {PARTITIONS} partitions ({n_faststream} for FastStream)\n"
    );
    print_table(&rows);
    compare(&rows);
    if !many_pipelines.is_empty() {
        println!("\n| pipelines | messages | ready after s | RSS MB at ready (per pipeline) | threads at ready | msgs/s | SIGTERM → exit s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for m in &many_pipelines {
            println!(
                "| {} | {} | {:.1} | {:.0} ({:.2}) | {} | {:.0} | {:.2} |",
                m.count,
                m.messages,
                m.ready_seconds,
                m.rss_mb,
                m.rss_mb / m.count as f64,
                m.threads,
                m.rate,
                m.shutdown_seconds
            );
        }
    }
    if let Some((rate, p50, p99)) = latency {
        println!(
            "\nproduce → committed latency, Rust orders, ACK, live stream at {rate:.0} msg/s: p50 {p50:.0} ms, p99 {p99:.0} ms (commit interval 200 ms)"
        );
    }
    for (name, (rate, p50, p99)) in &enrich_latency {
        println!(
            "produce → committed latency, Rust enrich {name}, ACK, live stream at {rate:.0} msg/s: p50 {p50:.0} ms, p99 {p99:.0} ms"
        );
    }
    let find = |case: &str, policy: &str| {
        rows.iter()
            .find(|r| {
                r.case.starts_with(case) && !r.case.ends_with(BASELINE_MARK) && r.policy == policy
            })
            .map(Row::rate)
    };
    let ratio = |name: &str, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("- {name}: {:.2}×", a / b);
        }
    };
    println!();
    let wasm = find("ackbar rust orders", "ACK");
    ratio(
        "Wasm (Rust orders, ACK) / native",
        wasm,
        find("native", "commit every 1 s"),
    );
    ratio(
        "Wasm (Rust orders, ACK) / raw limit",
        wasm,
        find("raw", "commit every 1 s"),
    );
    let faststream_consume_only = |policy: &str| {
        rows.iter()
            .find(|r| {
                r.case.starts_with("faststream") && !r.case.contains("enrich") && r.policy == policy
            })
            .map(Row::rate)
    };
    ratio(
        "Ackbar / FastStream, ACK",
        wasm,
        faststream_consume_only("ACK"),
    );
    ratio(
        "Ackbar / FastStream, ACK_FIRST",
        find("ackbar rust orders", "ACK_FIRST"),
        faststream_consume_only("ACK_FIRST"),
    );
    let at_least_once = find("ackbar rust enrich at-least-once", "ACK");
    ratio(
        "enrich at-least-once / consume-only (Rust, ACK)",
        at_least_once,
        wasm,
    );
    ratio(
        "enrich exactly-once (default sizing) / at-least-once",
        find("ackbar rust enrich exactly-once (500", "ACK"),
        at_least_once,
    );
    ratio(
        "Ackbar enrich at-least-once / FastStream enrich (publisher), ACK",
        at_least_once,
        rows.iter()
            .find(|r| r.case.contains("enrich (publisher)"))
            .map(Row::rate),
    );
    ratio(
        "ordering = key / ordering = partition (1 ms handler)",
        find("1 ms handler, 1 partition, ordering = key", "ACK"),
        find("1 ms handler, 1 partition, ordering = partition", "ACK"),
    );
    for language in ["go", "js", "python"] {
        ratio(
            &format!("{language} / Rust (orders, ACK)"),
            find(&format!("ackbar {language} orders"), "ACK"),
            wasm,
        );
    }
}
