//! Fleet deploys, measured: `ackbar deploy` to three `ackbar run` members on Apache Kafka, from
//! the command's start to its exit (which is when every member runs the new version), over
//! `BENCH_DEPLOYS` (10) deploys of a Rust component (the `orders` example, about 150 KB) and
//! `BENCH_PYTHON_DEPLOYS` (10) of a 40 MB one (the Python `orders` example grown to 40 MB by a
//! custom section). Every deploy is a version the members have never seen (a tag section makes
//! each one new, in this run and to every cache), so each is stored, downloaded, compiled and
//! smoke-tested.
//!
//! While the Rust versions are deployed, the members handle a backlog of 1 KiB orders with the
//! version being replaced; every member's `ackbar_messages_total` is read every 100 ms, and the
//! messages handled while a deploy runs (the swap windows) are compared, per second, with those
//! handled between deploys, each deploy followed by `BENCH_REST_MS` (2000) ms of rest.
//!
//! `make bench-deploy` runs it (release build).

mod common;

use ackbar_tests::broker_process::BrokerProcess;
use ackbar_tests::wasm::{pad_component, tag_component};
use common::{env_or, order, repo_root};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MEMBERS: usize = 3;
const PARTITIONS: i32 = 6;

fn ackbar() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ackbar-under-bench"))
}

/// One `ackbar run` member and the address of its `/metrics`.
struct Member {
    child: Child,
    metrics: String,
}

impl Member {
    fn start(config: &Path) -> Member {
        let mut child = Command::new(ackbar())
            .args(["run", config.to_str().unwrap()])
            .env("ACKBAR_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ackbar run");
        let mut lines = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok);
        let mut seen = Vec::new();
        let metrics = lines
            .by_ref()
            .find_map(|l| {
                seen.push(l.clone());
                l.split("http://")
                    .nth(1)
                    .filter(|_| l.contains("serving /metrics"))
                    .map(|a| a.trim().to_string())
            })
            .unwrap_or_else(|| panic!("the member did not start:\n{}", seen.join("\n")));
        std::thread::spawn(move || {
            for line in lines {
                if line.contains("ERROR") || line.contains("refused") {
                    eprintln!("member: {line}");
                }
            }
        });
        Member { child, metrics }
    }
}

/// A member's `ackbar_messages_total` summed over its labels, from its `/metrics` at `address`.
fn messages_handled(address: &str) -> u64 {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return 0;
    };
    let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with("ackbar_messages_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages handled by the whole fleet, sampled every 100 ms: (when, total).
type Samples = Arc<Mutex<Vec<(Instant, u64)>>>;

fn deploy(
    bootstrap: &str,
    prefix: &str,
    plugin: &Path,
    spec: Option<&Path>,
    pipeline: &str,
) -> Duration {
    let started = Instant::now();
    let mut command = Command::new(ackbar());
    command
        .args(["deploy", "--brokers", bootstrap, "--prefix", prefix])
        .args([
            "--tenant",
            "shop",
            "--pipeline",
            pipeline,
            "--timeout",
            "900",
        ]);
    if let Some(spec) = spec {
        command.arg("--spec").arg(spec);
    }
    let output = command
        .arg(plugin)
        .env("ACKBAR_LOG", "error")
        .output()
        .expect("run ackbar deploy");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    println!(
        "{what}: {} deploys, live on every member after p50 {:.2} s, max {:.2} s (min {:.2} s)",
        times.len(),
        percentile(times, 0.5).as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        times[0].as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let deploys: usize = env_or("BENCH_DEPLOYS", 10);
    let python_deploys: usize = env_or("BENCH_PYTHON_DEPLOYS", 10);
    let rest = Duration::from_millis(env_or("BENCH_REST_MS", 2000));
    let backlog: usize = env_or("BENCH_MESSAGES", 6_000_000);

    let broker = BrokerProcess::start(&repo_root(), "kafka").expect("start Apache Kafka");
    let bootstrap = broker.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let topic = format!("deploy-bench-{}", std::process::id());
    runtime
        .block_on(ackbar_tests::kafka::create_topic(
            &bootstrap, &topic, PARTITIONS,
        ))
        .unwrap();
    println!("producing {backlog} orders of 1 KiB on {PARTITIONS} partitions");
    let records: Vec<ackbar::kafka::Record> = (0..backlog)
        .map(|i| ackbar::kafka::Record::new((i % PARTITIONS as usize) as i32, order(i, false)))
        .collect();
    for chunk in records.chunks(200_000) {
        runtime
            .block_on(ackbar::kafka::produce(&bootstrap, &topic, chunk))
            .unwrap();
    }
    drop(records);

    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench{}", std::process::id());
    let config = dir.path().join("member.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{bootstrap}\"\n[run]\nsummary_interval_secs = 0\nmetrics_addr = \"127.0.0.1:0\"\n\
             [control]\nprefix = \"{prefix}\"\n\
             [[tenant]]\nname = \"shop\"\ntopics = [\"{topic}\", \"{topic}.py\"]\n"
        ),
    )
    .unwrap();
    runtime
        .block_on(ackbar_tests::kafka::create_topic(
            &bootstrap,
            &format!("{topic}.py"),
            1,
        ))
        .unwrap();
    let spec = dir.path().join("orders.toml");
    std::fs::write(
        &spec,
        format!("topics = [\"{topic}\"]\ngroup_id = \"shop.orders\"\nack_policy = \"ACK\"\n"),
    )
    .unwrap();
    let members: Vec<Member> = (0..MEMBERS).map(|_| Member::start(&config)).collect();

    let rust = std::fs::read(
        repo_root().join("guest-examples/rust/target/wasm32-wasip2/release/orders.wasm"),
    )
    .expect("the Rust orders example: run `make guests`");
    // Tags unique to this run: a version compiled by an earlier run would be a cache hit.
    let run_tag = std::process::id().wrapping_mul(1000);
    let version = |bytes: &[u8], tag: u32, name: &str| -> PathBuf {
        let path = dir.path().join(format!("{name}-{tag}.wasm"));
        std::fs::write(&path, tag_component(bytes, run_tag + tag)).unwrap();
        path
    };
    // The first deploy starts the pipeline: not a swap, not measured.
    deploy(
        &bootstrap,
        &prefix,
        &version(&rust, 0, "rust"),
        Some(&spec),
        "orders",
    );
    std::thread::sleep(Duration::from_secs(5));

    let samples: Samples = Arc::default();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (samples, sampling) = (samples.clone(), sampling.clone());
        let metrics: Vec<String> = members.iter().map(|m| m.metrics.clone()).collect();
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let total: u64 = metrics.iter().map(|a| messages_handled(a)).sum();
                samples.lock().unwrap().push((Instant::now(), total));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut windows = Vec::new();
    let mut rust_times = Vec::new();
    let begun = Instant::now();
    std::thread::sleep(rest);
    for tag in 1..=deploys as u32 {
        let plugin = version(&rust, tag, "rust");
        let start = Instant::now();
        rust_times.push(deploy(&bootstrap, &prefix, &plugin, None, "orders"));
        windows.push((start, Instant::now()));
        std::thread::sleep(rest);
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let samples = samples.lock().unwrap().clone();
    let (mut swap, mut swap_time, mut other, mut other_time) = (0u64, 0f64, 0u64, 0f64);
    for pair in samples.windows(2) {
        let ((t0, n0), (t1, n1)) = (pair[0], pair[1]);
        if t0 < begun {
            continue;
        }
        let handled = n1.saturating_sub(n0);
        let secs = (t1 - t0).as_secs_f64();
        let in_swap = windows.iter().any(|(s, e)| t1 > *s && t0 < *e);
        if in_swap {
            swap += handled;
            swap_time += secs;
        } else {
            other += handled;
            other_time += secs;
        }
    }
    report("Rust orders (150 KB)", &mut rust_times);
    let (swap_rate, other_rate) = (swap as f64 / swap_time, other as f64 / other_time);
    println!(
        "throughput in swap windows {swap_rate:.0} msg/s ({swap} messages in {swap_time:.1} s) against {other_rate:.0} msg/s between deploys ({other} in {other_time:.1} s): {:.2}x",
        swap_rate / other_rate
    );
    // A fleet that handled nothing in the last second ran out of backlog: the rates above
    // then count idle time.
    if let Some(&(end, total)) = samples.last() {
        let second_before = samples
            .iter()
            .rev()
            .find(|(t, _)| end - *t >= Duration::from_secs(1))
            .map_or(0, |s| s.1);
        if total == second_before {
            println!("warning: the backlog ran out during the run; raise BENCH_MESSAGES");
        }
    }

    // The 40 MB component, on its own pipeline (its handler is slower; the backlog stays with
    // the Rust one).
    if python_deploys > 0 {
        let python = std::fs::read(repo_root().join("guest-examples/python/target/orders.wasm"))
            .expect("the Python orders example: run `make guests`");
        let large = pad_component(&python, 40 << 20);
        let py_spec = dir.path().join("python.toml");
        std::fs::write(
            &py_spec,
            format!(
                "topics = [\"{topic}.py\"]\ngroup_id = \"shop.python\"\nack_policy = \"ACK\"\n"
            ),
        )
        .unwrap();
        deploy(
            &bootstrap,
            &prefix,
            &version(&large, 0, "python"),
            Some(&py_spec),
            "python",
        );
        let mut python_times = Vec::new();
        for tag in 1..=python_deploys as u32 {
            let plugin = version(&large, tag, "python");
            python_times.push(deploy(&bootstrap, &prefix, &plugin, None, "python"));
            std::fs::remove_file(plugin).unwrap();
        }
        report("Python orders (40 MB)", &mut python_times);
    }
    drop(members);
}
