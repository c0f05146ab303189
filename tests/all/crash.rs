//! Crash safety, black-box: `ackbar run` against Apache Kafka is killed with SIGKILL at random
//! points and restarted; every message must be handled at least once, none skipped, and the
//! re-handled ones only those settled after the last commit before a kill.

use crate::brokers::BrokerKind;
use crate::support::{guest, Cluster};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: i64 = 20_000;
const PARTITIONS: i32 = 4;
const KILLS: usize = 4;
// Messages take 2 ms each ("sleep:2"), so the stream lasts about 10 s over 4 partitions and
// every kill lands mid-stream.
const COMMIT_INTERVAL_MS: u64 = 200;

/// Settled (partition, offset) pairs, parsed from the debug lines of one `ackbar run`.
pub(crate) type Settled = Arc<Mutex<Vec<(i32, i64)>>>;

/// The value of `name=` in a log line.
pub(crate) fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// An `ackbar run` child that is killed if the test fails, so no consumer outlives it, and the
/// thread reading its log, if any.
pub(crate) struct Ackbar(pub(crate) Child, pub(crate) Option<JoinHandle<()>>);

impl Ackbar {
    /// SIGKILL, then every line the child wrote before it died is read.
    pub(crate) fn kill_and_read_all(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        if let Some(reader) = self.1.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for Ackbar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_ackbar(config: &std::path::Path) -> (Ackbar, Settled) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["run", config.to_str().unwrap()])
        .env("ACKBAR_LOG", "warn,ackbar::events=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ackbar run");
    let settled: Settled = Arc::default();
    let sink = settled.clone();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.contains("action=commit") {
                // Warnings and errors of the child show in the test's output on failure.
                if !line.contains("DEBUG") {
                    println!("ackbar: {line}");
                }
                continue;
            }
            let partition =
                field(&line, "partition=").and_then(|p| p.rsplit('/').next()?.parse().ok());
            let offset = field(&line, "offset=").and_then(|o| o.parse().ok());
            if let (Some(p), Some(o)) = (partition, offset) {
                sink.lock().unwrap().push((p, o));
            }
        }
    });
    (Ackbar(child, Some(reader)), settled)
}

pub(crate) fn count(settled: &Settled) -> usize {
    settled.lock().unwrap().len()
}

/// A pseudo-random delay in `[min, max)`, different on every run (the seed is printed).
pub(crate) fn random_delay(seed: &mut u64, min: u64, max: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(min + *seed % (max - min))
}

async fn survive_kill_nine(
    broker: BrokerKind,
    policy: &str,
    payload_for: impl Fn(i64) -> &'static str,
) {
    let cluster = Cluster::on(broker, PARTITIONS).await;
    let records: Vec<ackbar::kafka::Record> = (0..MESSAGES)
        .map(|i| ackbar::kafka::Record::new((i % PARTITIONS as i64) as i32, payload_for(i)))
        .collect();
    ackbar::kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"{}\"\n[run]\nsummary_interval_secs = 0\n[kafka]\n{}\
             \"max.poll.interval.ms\" = 10000\n\
             [[pipeline]]\nname = \"crash\"\ntopics = [\"{}\"]\ngroup_id = \"{}\"\nack_policy = \"{policy}\"\n\
             plugin = \"{}\"\ncommit_interval_ms = {COMMIT_INTERVAL_MS}\n{}[pipeline.backoff]\ninitial_ms = 10\n",
            cluster.bootstrap,
            broker.kafka_toml(),
            cluster.topic,
            cluster.group,
            guest("fixture").display(),
            broker.pipeline_toml()
        ),
    )
    .unwrap();

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill -9 test seed {seed}");
    let mut runs: Vec<Vec<(i32, i64)>> = Vec::new();
    let mut bounds = Vec::new();
    for _ in 0..KILLS {
        let (mut child, settled) = start_ackbar(&config);
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&settled) == 0 {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("ackbar exited early ({status}) in cycle {}", runs.len() + 1);
            }
            assert!(
                Instant::now() < deadline,
                "ackbar handled nothing in cycle {}",
                runs.len() + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(random_delay(&mut seed, 100, 800)).await;
        child.kill_and_read_all();
        // What the next run can handle again: what this one settled at or after the offset it
        // had committed when it died, where the next one resumes. Nothing below it.
        let committed = cluster.committed();
        let run = settled.lock().unwrap().clone();
        bounds.push(
            run.iter()
                .filter(|(p, o)| committed[*p as usize].is_none_or(|c| *o >= c))
                .count(),
        );
        runs.push(run);
    }
    let (mut child, settled) = start_ackbar(&config);
    let deadline = Instant::now() + Duration::from_secs(300);
    let covered = |runs: &[Vec<(i32, i64)>], last: &[(i32, i64)]| {
        runs.iter()
            .flatten()
            .chain(last)
            .copied()
            .collect::<BTreeSet<_>>()
            .len() as i64
    };
    loop {
        let last = settled.lock().unwrap().clone();
        if covered(&runs, &last) == MESSAGES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {MESSAGES} handled",
            covered(&runs, &last)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(
        child.0.wait().unwrap().success(),
        "clean exit after SIGTERM"
    );
    runs.push(settled.lock().unwrap().clone());

    let mut times: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (p, o) in runs.iter().flatten() {
        *times.entry((*p, *o)).or_default() += 1;
    }
    let expected: BTreeSet<(i32, i64)> = (0..MESSAGES).map(|i| ((i % 4) as i32, i / 4)).collect();
    assert_eq!(
        times.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "every offset handled, none skipped"
    );
    let duplicates: usize = times.values().map(|n| n - 1).sum();
    let bound: usize = bounds.iter().sum();
    println!(
        "{policy}: {KILLS} kill -9 cycles, {} deliveries settled, {duplicates} duplicates (bound {bound})",
        times.values().sum::<usize>()
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed the bound {bound} ({bounds:?})"
    );
    assert_eq!(
        cluster.committed(),
        vec![Some(MESSAGES / PARTITIONS as i64); PARTITIONS as usize],
        "the graceful stop committed everything"
    );
}

crate::brokers::on_both_protocols! {
    kill_nine_under_ack_loses_nothing => |broker| survive_kill_nine(broker, "ACK", |_| "sleep:2");
    kill_nine_under_nack_on_error_with_ten_percent_failures_loses_nothing => |broker| {
        survive_kill_nine(broker, "NACK_ON_ERROR", |i| match i % 10 {
            3 => "fail-until:2",
            _ => "sleep:2",
        })
    };
}
