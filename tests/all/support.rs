//! Test fixtures: guest plugins, an embedded broker per test, and a running pipeline whose
//! per-message reports can be awaited.

use crate::brokers::{external, BrokerKind};
use ackbar::config::{Backoff, GroupProtocol, PipelineConfig};
use ackbar::consumer::{Pipeline, PipelineHandle};
use ackbar::embedded::EmbeddedBroker;
use ackbar::events::DeliveryEvent;
use ackbar::kafka::{self, Record};
use ackbar::plugin::{EngineOptions, PluginRuntime, PoolSizing};
use ackbar::policy::{AckPolicy, Action};
use ackbar::tenant::TenantBudget;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

pub use ackbar_tests::repo_root;

/// Runs the `ackbar` program with `args`, logging only errors.
pub fn ackbar(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(args)
        .env("ACKBAR_LOG", "error")
        .output()
        .expect("run ackbar")
}

/// Program output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Path of a Rust guest (`fixture` or `orders`), built once per test run.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = repo_root().join("guest-examples/rust");
    BUILT.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(dir.join("build.sh"))
            .arg("--quiet")
            .status()
            .expect("running guest-examples/rust/build.sh");
        assert!(status.success(), "building the Rust guests failed");
    });
    let path = dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"));
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// An example handler (`orders` or `manual`) of one language, built by that language's
/// `guest-examples/<language>/build.sh` once per test run (a no-op when nothing changed).
pub fn example(language: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let dir = repo_root().join("guest-examples").join(language);
    {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if !built.iter().any(|l| l == language) {
            let output = std::process::Command::new("bash")
                .arg(dir.join("build.sh"))
                .output()
                .unwrap_or_else(|e| panic!("running guest-examples/{language}/build.sh: {e}"));
            assert!(
                output.status.success(),
                "guest-examples/{language}/build.sh failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            built.push(language.to_string());
        }
    }
    let path = dir.join(format!("target/{name}.wasm"));
    assert!(path.is_file(), "{} missing after build", path.display());
    path
}

/// A first delivery of `payload` at offset 0 of `topic`, partition 0, as a handler gets it.
pub fn message_on(topic: &str, payload: &[u8]) -> ackbar::bindings::Message {
    ackbar::bindings::Message {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        attempt: 1,
    }
}

/// Logs go to the test output; `ACKBAR_LOG=debug cargo test ...` shows them.
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("ACKBAR_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// One plugin runtime per test binary, as in a real process.
pub fn runtime() -> PluginRuntime {
    init_logging();
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // Pooled like `ackbar run`, with room for every test running at once.
            let options = EngineOptions {
                pooling: Some(PoolSizing {
                    instances: 1000,
                    max_memory_bytes: 4 << 30,
                }),
                ..EngineOptions::default()
            };
            PluginRuntime::with_engine(ackbar::plugin::default_cache_dir(), options)
                .expect("runtime")
        })
        .clone()
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A broker with one topic, and the names a test uses on it.
pub struct Cluster {
    pub kind: BrokerKind,
    pub embedded: Option<EmbeddedBroker>,
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
}

impl Cluster {
    /// A fresh embedded broker with a topic of `partitions`.
    pub fn new(partitions: i32) -> Self {
        let broker = EmbeddedBroker::start().expect("embedded broker");
        let bootstrap = broker.bootstrap_servers().to_string();
        let topic = unique("topic");
        broker
            .create_topic(&topic, partitions)
            .expect("create topic");
        Cluster {
            kind: BrokerKind::Embedded,
            embedded: Some(broker),
            bootstrap,
            topic,
            group: unique("group"),
            partitions,
        }
    }

    /// A new topic on a broker of `kind` (the shared process for real brokers).
    pub async fn on(kind: BrokerKind, partitions: i32) -> Self {
        if kind == BrokerKind::Embedded {
            return Cluster::new(partitions);
        }
        init_logging();
        let bootstrap = external(kind).bootstrap.clone();
        let topic = unique("topic");
        ackbar_tests::kafka::create_topic(&bootstrap, &topic, partitions)
            .await
            .expect("create topic");
        Cluster {
            kind,
            embedded: None,
            bootstrap,
            topic,
            group: unique("group"),
            partitions,
        }
    }

    /// Creates another topic on the same broker.
    pub async fn add_topic(&self, name: &str, partitions: i32) {
        match &self.embedded {
            Some(broker) => broker.create_topic(name, partitions).expect("create topic"),
            None => ackbar_tests::kafka::create_topic(&self.bootstrap, name, partitions)
                .await
                .expect("create topic"),
        }
    }

    /// Produces `(partition, payload)` pairs; returns their offsets.
    pub async fn produce(&self, messages: &[(i32, &str)]) -> Vec<(i32, i64)> {
        let records: Vec<Record> = messages
            .iter()
            .map(|(p, m)| Record::new(*p, m.as_bytes()))
            .collect();
        kafka::produce(&self.bootstrap, &self.topic, &records)
            .await
            .expect("produce")
    }

    /// Committed offsets of the test's group, read back from the broker, for every partition.
    pub fn committed(&self) -> Vec<Option<i64>> {
        self.try_committed().expect("committed offsets")
    }

    /// [`committed`](Self::committed), or the error (a group coordinator still moving, say),
    /// for a test that polls until an offset is committed.
    pub fn try_committed(&self) -> anyhow::Result<Vec<Option<i64>>> {
        let partitions: Vec<i32> = (0..self.partitions).collect();
        Ok(
            kafka::committed_offsets(&self.bootstrap, &self.group, &self.topic, &partitions)?
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
        )
    }

    /// Polls until the group has committed `expected`; panics after `timeout`.
    pub async fn until_committed(&self, expected: &[Option<i64>], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let committed = self.try_committed();
            if committed.as_ref().is_ok_and(|c| c == expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "committed {committed:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A pipeline on the fixture guest with test-friendly timings.
    pub fn config(&self, policy: AckPolicy) -> PipelineConfig {
        let mut c = PipelineConfig::new(&unique("pipeline"), &[&self.topic], guest("fixture"));
        c.group_id = Some(self.group.clone());
        c.ack_policy = policy;
        c.commit_interval = Duration::from_millis(100);
        c.drain_timeout = Duration::from_secs(5);
        c.backoff = Backoff {
            initial_ms: 20,
            max_ms: 200,
            multiplier: 2.0,
        };
        c.limits.deadline = Duration::from_secs(2);
        if self.kind == BrokerKind::KafkaConsumerProtocol {
            // KIP-848: the broker drives assignment; session settings belong to the broker.
            c.group_protocol = GroupProtocol::Consumer;
        } else {
            c.kafka.insert("session.timeout.ms".into(), "6000".into());
            c.kafka.insert("heartbeat.interval.ms".into(), "500".into());
        }
        c
    }

    pub fn start(&self, config: PipelineConfig) -> Running {
        let budget = TenantBudget::new(&config.tenant, config.tenant_limits);
        self.start_in(config, budget)
    }

    /// Starts a pipeline that shares `budget` with its tenant's other pipelines.
    pub fn start_in(&self, config: PipelineConfig, budget: Arc<TenantBudget>) -> Running {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let health = Arc::new(ackbar::health::Health::default());
        let handle = Pipeline::start_in(
            config,
            &self.bootstrap,
            &runtime(),
            Some(tx),
            budget,
            health,
        )
        .expect("pipeline starts");
        Running {
            final_stats: None,
            handle: Some(handle),
            reports: rx,
            seen: Vec::new(),
        }
    }
}

/// A running pipeline and every report it has produced so far.
pub struct Running {
    pub handle: Option<PipelineHandle>,
    /// The pipeline's counters when it stopped.
    pub final_stats: Option<ackbar::stats::StatsSnapshot>,
    reports: UnboundedReceiver<DeliveryEvent>,
    pub seen: Vec<DeliveryEvent>,
}

impl Running {
    /// Waits until `done(all reports so far)` holds; panics after `timeout`.
    pub async fn until(&mut self, timeout: Duration, done: impl Fn(&[DeliveryEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) => self.seen.push(r),
                Ok(None) => panic!("pipeline stopped reporting; seen: {:#?}", self.summary()),
                Err(_) => panic!("timed out after {timeout:?}; seen: {:#?}", self.summary()),
            }
        }
    }

    /// Collects reports for `quiet` more time (to show nothing else happens).
    pub async fn settle(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.reports.recv()).await {
            self.seen.push(r);
        }
    }

    /// Stops the pipeline gracefully and collects the last reports.
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.final_stats = Some(handle.shutdown().await.expect("clean shutdown"));
        }
        while let Ok(r) = self.reports.try_recv() {
            self.seen.push(r);
        }
    }

    pub fn deliveries(&self, partition: i32, offset: i64) -> Vec<&DeliveryEvent> {
        self.seen
            .iter()
            .filter(|r| r.partition == partition && r.offset == offset)
            .collect()
    }

    pub fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|r| {
                format!(
                    "{}@{} #{} {} -> {:?}",
                    r.partition,
                    r.offset,
                    r.attempt,
                    r.outcome.label(),
                    r.action
                )
            })
            .collect()
    }
}

/// Deliveries that settled their message (anything but a redelivery).
pub fn settled(r: &DeliveryEvent) -> bool {
    r.action != Action::Redeliver
}

/// `ackbar run` as a child process whose log lines can be awaited.
pub(crate) struct RunningAckbar {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl RunningAckbar {
    pub(crate) fn start(config_text: &str, dir: &std::path::Path) -> Self {
        Self::start_with(config_text, dir, &[])
    }

    pub(crate) fn start_with(config_text: &str, dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_full(config_text, dir, args, &[])
    }

    /// With `env` set for the process.
    pub(crate) fn start_env(
        config_text: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_full(config_text, dir, &[], env)
    }

    fn start_full(
        config_text: &str,
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let config = dir.join("ackbar.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
            .args(["run", config.to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .env("ACKBAR_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ackbar run");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        RunningAckbar {
            child,
            lines,
            log: Vec::new(),
        }
    }

    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; log:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Like [`wait_for`](Self::wait_for), but also accepts a line already read.
    pub(crate) fn seen_or_wait(&mut self, needle: &str) -> String {
        match self.log.iter().find(|l| l.contains(needle)) {
            Some(line) => line.clone(),
            None => self.wait_for(needle),
        }
    }

    /// The address of `/metrics`, `/healthz` and `/readyz`, from the line announcing them.
    pub(crate) fn ops_address(&mut self) -> String {
        let line = self.wait_for("serving /metrics");
        let addr = line.split("http://").nth(1).expect("address");
        addr.trim().to_string()
    }

    /// The embedded broker's address, from its startup line.
    pub(crate) fn broker_address(&mut self) -> String {
        let line = self.wait_for("embedded broker listening on ");
        line.split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address")
            .to_string()
    }

    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "ackbar did not exit");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for RunningAckbar {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None)
}

/// A plain HTTP/1.1 request without a body, with a bearer `token` if given: (status code, body).
pub(crate) fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the ops endpoint");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
