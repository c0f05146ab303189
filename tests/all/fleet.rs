//! The fleet on Apache Kafka: `ackbar run` members with `[control]` run what a tenant deploys
//! with `ackbar deploy`, swap versions while messages flow without losing or repeating one,
//! refuse a version that fails its smoke test, roll back, stop a removed pipeline with its
//! offsets committed, and a member killed during a deploy comes back on the new version.

use crate::brokers::BrokerKind;
use crate::support::*;
use ackbar::control::{pipelines_topic, status_topic, DesiredState, MemberStatus, StatusTopic};
use ackbar_tests::wasm::tag_component;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;

/// A message a member settled: (partition, offset, plugin version).
type Handled = Arc<Mutex<Vec<(i32, i64, String)>>>;

/// One `ackbar run` member, killed when dropped, with what it settled (from its JSON logs).
pub(crate) struct Member {
    child: Child,
    reader: Option<JoinHandle<()>>,
    handled: Handled,
}

impl Member {
    pub(crate) fn start(config: &Path) -> Member {
        Member::start_with_env(config, &[])
    }

    /// A member with these environment variables besides the inherited ones.
    pub(crate) fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
            .args(["--log-format", "json", "run", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .env(
                "ACKBAR_LOG",
                "warn,ackbar::events=debug,ackbar::consumer::handler_call=info,ackbar::control=info",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ackbar run");
        let handled: Handled = Arc::default();
        let sink = handled.clone();
        let stderr = child.stderr.take().unwrap();
        let pid = child.id();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    println!("member {pid}: {line}");
                    continue;
                };
                let fields = &json["fields"];
                if fields["action"] != "commit" {
                    if json["level"] != "DEBUG" && json["level"] != "INFO"
                        || json["target"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("ackbar::control"))
                    {
                        println!("member {pid}: {line}");
                    }
                    continue;
                }
                let partition = fields["partition"]
                    .as_str()
                    .and_then(|p| p.rsplit('/').next()?.parse().ok());
                let offset = fields["offset"].as_i64();
                let plugin = json["span"]["plugin"].as_str().unwrap_or("?").to_string();
                if let (Some(p), Some(o)) = (partition, offset) {
                    sink.lock().unwrap().push((p, o, plugin));
                }
            }
        });
        Member {
            child,
            reader: Some(reader),
            handled,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill_nine(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    /// SIGTERM, and waits for the graceful exit.
    fn stop(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "member {} exited with {status}",
            self.pid()
        );
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fleet of members sharing one control plane on the test's cluster.
pub(crate) struct Fleet {
    pub(crate) cluster: Cluster,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) prefix: String,
    pub(crate) config: PathBuf,
    pub(crate) spec: PathBuf,
    pub(crate) plugins: Vec<PathBuf>,
    partitions: i32,
}

impl Fleet {
    async fn new() -> Fleet {
        Fleet::with_partitions(PARTITIONS).await
    }

    /// A fleet whose pipeline's topic has `partitions` partitions.
    pub(crate) async fn with_partitions(partitions: i32) -> Fleet {
        let mut cluster = Cluster::on(BrokerKind::Kafka, partitions).await;
        // A deployed pipeline's group must be its tenant's.
        cluster.group = format!("shop.{}", unique("g"));
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique("fleet");
        let config = dir.path().join("member.toml");
        std::fs::write(
            &config,
            format!(
                "brokers = \"{}\"\n[run]\nsummary_interval_secs = 0\n\
                 [kafka]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n\
                 [control]\nprefix = \"{prefix}\"\npoll_interval_ms = 200\nstatus_interval_ms = 1000\n\
                 [[tenant]]\nname = \"shop\"\ntopics = [\"{}\"]\n",
                cluster.bootstrap, cluster.topic
            ),
        )
        .unwrap();
        let spec = dir.path().join("orders.toml");
        std::fs::write(
            &spec,
            format!(
                "topics = [\"{}\"]\ngroup_id = \"{}\"\nack_policy = \"ACK\"\ncommit_interval_ms = 200\n",
                cluster.topic, cluster.group
            ),
        )
        .unwrap();
        // Versions that behave alike, told apart by their content hash.
        let fixture = std::fs::read(guest("fixture")).unwrap();
        let plugins = (1..=2)
            .map(|v| {
                let path = dir.path().join(format!("v{v}.wasm"));
                std::fs::write(&path, tag_component(&fixture, v)).unwrap();
                path
            })
            .collect();
        Fleet {
            cluster,
            dir,
            prefix,
            config,
            spec,
            plugins,
            partitions,
        }
    }

    /// Runs an `ackbar` fleet command against this fleet's control plane.
    pub(crate) fn command(&self, args: &[&str]) -> std::process::Output {
        run_ackbar(self.command_line(args))
    }

    /// The arguments of an `ackbar` fleet command against this fleet's control plane.
    pub(crate) fn command_line(&self, args: &[&str]) -> Vec<String> {
        let mut full: Vec<&str> = vec![args[0], "--brokers", &self.cluster.bootstrap];
        full.extend(["--prefix", &self.prefix]);
        full.extend(&args[1..]);
        full.into_iter().map(String::from).collect()
    }

    pub(crate) fn deploy(&self, plugin: &Path, extra: &[&str]) -> std::process::Output {
        self.command(&Self::deploy_args(plugin, extra))
    }

    /// `deploy` of `plugin` to the tenant's pipeline, with `extra` arguments.
    pub(crate) fn deploy_args<'a>(plugin: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["deploy", "--tenant", "shop", "--pipeline", "orders"];
        args.extend(extra);
        args.push(plugin.to_str().unwrap());
        args
    }

    pub(crate) fn members(&self) -> Vec<MemberStatus> {
        let properties = BTreeMap::from([(
            "bootstrap.servers".to_string(),
            self.cluster.bootstrap.clone(),
        )]);
        StatusTopic::new(status_topic(&self.prefix), properties)
            .read_live()
            .expect("read the status topic")
    }

    /// Polls the status until `done` holds for the live members.
    pub(crate) async fn until(
        &self,
        what: &str,
        done: impl Fn(&[MemberStatus]) -> bool,
    ) -> Vec<MemberStatus> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let members = self.members();
            if done(&members) {
                return members;
            }
            assert!(Instant::now() < deadline, "{what}; members: {members:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `count` members run the pipeline and together consume every partition:
    /// the group is settled.
    pub(crate) async fn until_assigned(&self, count: usize) -> Vec<MemberStatus> {
        self.until("every partition assigned", |members| {
            let assigned: Vec<usize> = members
                .iter()
                .filter_map(|m| m.pipeline("shop", "orders"))
                .map(|p| p.partitions.len())
                .collect();
            assigned.len() == count
                && assigned.iter().all(|&n| n > 0)
                && assigned.iter().sum::<usize>() == self.partitions as usize
        })
        .await
    }

    async fn produce(&self, from: i64, to: i64) {
        self.produce_with(from, to, |_| "sleep:1".to_string()).await
    }

    /// Messages `from..to`, message `i` on partition `i % partitions` with `payload(i)`.
    pub(crate) async fn produce_with(&self, from: i64, to: i64, payload: impl Fn(i64) -> String) {
        let partitions = self.partitions as i64;
        let records: Vec<ackbar::kafka::Record> = (from..to)
            .map(|i| ackbar::kafka::Record::new((i % partitions) as i32, payload(i)))
            .collect();
        ackbar::kafka::produce(&self.cluster.bootstrap, &self.cluster.topic, &records)
            .await
            .unwrap();
    }
}

/// Runs `ackbar` with `args` and prints what it said.
pub(crate) fn run_ackbar(args: Vec<String>) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(&args)
        .env("ACKBAR_LOG", "error")
        .output()
        .expect("run ackbar");
    println!(
        "$ ackbar {}\n{}{}",
        args.join(" "),
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Every (partition, offset) handled by any member, with the versions that handled it.
pub(crate) fn handled(members: &[&Member]) -> BTreeMap<(i32, i64), Vec<String>> {
    let mut all: BTreeMap<(i32, i64), Vec<String>> = BTreeMap::new();
    for m in members {
        for (p, o, v) in m.handled.lock().unwrap().iter() {
            all.entry((*p, *o)).or_default().push(v.clone());
        }
    }
    all
}

pub(crate) async fn until_handled(members: &[&Member], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = handled(members).len();
        if n >= count {
            return;
        }
        assert!(Instant::now() < deadline, "only {n} of {count} handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The version each member's pipeline runs now, when they all agree.
pub(crate) fn running_version(members: &[MemberStatus]) -> Option<String> {
    let versions: BTreeSet<Option<String>> = members
        .iter()
        .map(|m| {
            m.pipeline("shop", "orders")
                .and_then(|p| p.plugin_version.clone())
        })
        .collect();
    match versions.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(v)] => Some(v.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reaches_every_member_while_messages_flow_and_rolls_back() {
    let fleet = Fleet::new().await;
    let mut members: Vec<Member> = (0..3).map(|_| Member::start(&fleet.config)).collect();
    fleet.until("three members live", |m| m.len() == 3).await;

    // A new pipeline needs its spec.
    let no_spec = fleet.deploy(&fleet.plugins[0], &[]);
    assert!(!no_spec.status.success());
    assert!(text(&no_spec.stderr).contains("give its spec with --spec"));

    let v1 = fleet.deploy(&fleet.plugins[0], &["--spec", fleet.spec.to_str().unwrap()]);
    assert!(v1.status.success(), "deploy v1");
    assert!(text(&v1.stderr).contains("every member (3) applied it"));
    assert_eq!(
        text(&v1.stdout).matches("deploy 1 plugin sha256:").count(),
        3,
        "deploy prints what each member runs"
    );
    let v1_version = running_version(&fleet.until_assigned(3).await).expect("one version");

    // 30,000 messages, v2 deployed while they are handled, then 30,000 more.
    fleet.produce(0, 30_000).await;
    let refs: Vec<&Member> = members.iter().collect();
    until_handled(&refs, 5_000).await;
    let v2 = fleet.deploy(&fleet.plugins[1], &[]);
    assert!(v2.status.success(), "deploy v2");
    let after_v2 = fleet.members();
    let v2_version = running_version(&after_v2).expect("every member on one version");
    assert_ne!(v2_version, v1_version);
    for m in &after_v2 {
        let p = m.pipeline("shop", "orders").unwrap();
        assert_eq!(p.deployed.as_ref().unwrap().generation, 2, "{m:?}");
    }
    fleet.produce(30_000, 60_000).await;
    until_handled(&refs, 60_000).await;
    let all = handled(&refs);
    assert_eq!(all.len(), 60_000, "every message handled");
    let twice: Vec<_> = all.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "handled twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    let by = |version: &str| all.values().filter(|v| v[0] == version).count();
    assert!(
        by(&v1_version) >= 5_000,
        "v1 handled what came before the deploy"
    );
    assert!(
        by(&v2_version) >= 30_000,
        "every message produced after the deploy returned is handled by v2"
    );
    // Produced after the deploy returned: partition p's offsets from 5,000 on (30,000 / 6).
    for ((_, offset), versions) in &all {
        if *offset >= 5_000 {
            assert_eq!(versions[0], v2_version, "offset {offset}");
        }
    }

    // A version that traps on its smoke payload is refused everywhere; v2 keeps running.
    let bad_spec = fleet.dir.path().join("bad.toml");
    std::fs::write(
        &bad_spec,
        format!(
            "{}smoke_payload = \"trap\"\n",
            std::fs::read_to_string(&fleet.spec).unwrap()
        ),
    )
    .unwrap();
    let refused = fleet.deploy(&fleet.plugins[0], &["--spec", bad_spec.to_str().unwrap()]);
    assert!(!refused.status.success());
    let why = text(&refused.stderr);
    assert!(why.contains("3 of 3 members refused"), "{why}");
    assert!(why.contains("trap"), "the reason names the trap: {why}");
    let members_now = fleet.members();
    assert_eq!(
        running_version(&members_now).as_deref(),
        Some(v2_version.as_str())
    );
    for m in &members_now {
        let p = m.pipeline("shop", "orders").unwrap();
        assert_eq!(p.refused.as_ref().unwrap().generation, 3);
        assert_eq!(p.deployed.as_ref().unwrap().generation, 2);
    }
    let status = fleet.command(&["status"]);
    assert!(status.status.success());
    assert!(text(&status.stdout).contains("refused deploy 3"));

    // Rollback (to the deploy before the current one: 1, since 3 was refused) returns every
    // member to v1.
    let back = fleet.command(&[
        "rollback",
        "--tenant",
        "shop",
        "--pipeline",
        "orders",
        "--to",
        "1",
    ]);
    assert!(back.status.success(), "rollback");
    let after_rollback = fleet.members();
    assert_eq!(
        running_version(&after_rollback).as_deref(),
        Some(v1_version.as_str())
    );
    fleet.produce(60_000, 61_200).await;
    until_handled(&refs, 61_200).await;
    let all = handled(&refs);
    for ((_, offset), versions) in &all {
        if *offset >= 10_000 {
            assert_eq!(
                versions[0], v1_version,
                "offset {offset} after the rollback"
            );
        }
    }

    fleet
        .until("every member reports lag 0", |members| {
            members.len() == 3
                && members.iter().all(|m| {
                    m.pipeline("shop", "orders")
                        .is_some_and(|p| p.lag == Some(0))
                })
        })
        .await;

    // Removed: stopped everywhere, offsets committed: no lag.
    let removed = fleet.command(&["undeploy", "--tenant", "shop", "--pipeline", "orders"]);
    assert!(removed.status.success(), "undeploy");
    for m in fleet.members() {
        assert!(m.pipeline("shop", "orders").is_none(), "{m:?}");
    }
    let ends = vec![Some(61_200 / PARTITIONS as i64); PARTITIONS as usize];
    assert_eq!(
        fleet.cluster.committed(),
        ends,
        "lag 0 after the pipeline stopped"
    );

    // A member that stops leaves the status.
    members[0].stop();
    assert_eq!(fleet.members().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_during_a_deploy_comes_back_on_the_new_version_before_it_consumes() {
    let fleet = Fleet::new().await;
    let mut first = Member::start(&fleet.config);
    let mut second = Member::start(&fleet.config);
    fleet.until("two members live", |m| m.len() == 2).await;
    let v1 = fleet.deploy(&fleet.plugins[0], &["--spec", fleet.spec.to_str().unwrap()]);
    assert!(v1.status.success());
    let v1_version = running_version(&fleet.until_assigned(2).await).unwrap();
    fleet.produce(0, 12_000).await;
    until_handled(&[&first, &second], 1_000).await;

    second.kill_nine();
    let bootstrap = fleet.cluster.bootstrap.clone();
    let (prefix, plugin) = (fleet.prefix.clone(), fleet.plugins[1].clone());
    // The deploy waits for the killed member until its status expires or it comes back.
    let deploy = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
            .args(["deploy", "--brokers", &bootstrap, "--prefix", &prefix])
            .args(["--tenant", "shop", "--pipeline", "orders"])
            .arg(&plugin)
            .env("ACKBAR_LOG", "error")
            .output()
            .unwrap()
    });
    // Back once the deploy is recorded (the deploy itself still waits): it must run v2 from
    // its start.
    let desired = DesiredState::new(
        pipelines_topic(&fleet.prefix, "shop").unwrap(),
        BTreeMap::from([(
            "bootstrap.servers".to_string(),
            fleet.cluster.bootstrap.clone(),
        )]),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while desired.read().unwrap().get("orders").map(|d| d.generation) != Some(2) {
        assert!(Instant::now() < deadline, "the deploy was not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = Member::start(&fleet.config);
    let deployed = deploy.join().unwrap();
    assert!(
        deployed.status.success(),
        "{}{}",
        text(&deployed.stdout),
        text(&deployed.stderr)
    );
    let members = fleet.until_assigned(2).await;
    let v2_version = running_version(&members).expect("one version");
    assert_ne!(v2_version, v1_version);
    fleet.produce(12_000, 12_600).await;
    let all = [&first, &second, &restarted];
    until_handled(&all, 12_600).await;
    let by_restarted = restarted.handled.lock().unwrap().clone();
    assert!(
        !by_restarted.is_empty(),
        "the restarted member took partitions"
    );
    for (p, o, version) in &by_restarted {
        assert_eq!(version, &v2_version, "{p}/{o}: the restarted member ran v1");
    }
    first.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_takes_deploys_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        "brokers = \"embedded\"\n[run]\nsummary_interval_secs = 0\n[embedded]\npartitions = 2\n\
         [control]\npoll_interval_ms = 200\nstatus_interval_ms = 1000\n\
         [[tenant]]\nname = \"shop\"\ntopics = [\"orders\"]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["run", config.to_str().unwrap()])
        .env("ACKBAR_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ackbar run");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            println!("ackbar run: {line}");
            let _ = tx.send(line);
        }
    });
    let bootstrap = lines
        .iter()
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        })
        .expect("the embedded broker's address");
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "topics = [\"orders\"]\ngroup_id = \"shop.orders\"\nack_policy = \"ACK\"\n",
    )
    .unwrap();
    let deploy = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["deploy", "--brokers", &bootstrap, "--tenant", "shop"])
        .args(["--pipeline", "orders", "--spec", spec.to_str().unwrap()])
        .arg(guest("fixture"))
        .env("ACKBAR_LOG", "error")
        .output()
        .unwrap();
    assert!(deploy.status.success(), "{}", text(&deploy.stderr));
    let records = [
        ackbar::kafka::Record::new(0, "ok"),
        ackbar::kafka::Record::new(1, "ok"),
    ];
    ackbar::kafka::produce(&bootstrap, "orders", &records)
        .await
        .unwrap();
    let status = StatusTopic::new(
        status_topic("ackbar"),
        BTreeMap::from([("bootstrap.servers".to_string(), bootstrap.clone())]),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let members = status.read_live().unwrap();
        let handled = members
            .iter()
            .filter_map(|m| m.pipeline("shop", "orders"))
            .map(|p| p.messages)
            .sum::<u64>();
        if handled == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{members:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A record that is not a deployed pipeline, written past `ackbar deploy`: refused for that
    // name alone, the deployed pipeline goes on, and `undeploy` removes it.
    let junk = ackbar::kafka::Record {
        partition: Some(0),
        key: Some(b"junk".to_vec()),
        payload: b"{not json".to_vec(),
        headers: vec![],
    };
    ackbar::kafka::produce(&bootstrap, "ackbar.shop.pipelines", &[junk])
        .await
        .unwrap();
    let refused = |members: &[MemberStatus]| {
        members.iter().any(|m| {
            m.pipeline("shop", "junk")
                .and_then(|p| p.refused.as_ref())
                .is_some_and(|r| {
                    r.reason
                        .contains("pipeline 'junk': the record is not a deployed pipeline")
                })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !refused(&status.read_live().unwrap()) {
        assert!(Instant::now() < deadline, "{:#?}", status.read_live());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let members = status.read_live().unwrap();
    assert!(members[0]
        .pipeline("shop", "orders")
        .unwrap()
        .plugin_version
        .is_some());
    let undeploy = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args([
            "undeploy",
            "--brokers",
            &bootstrap,
            "--tenant",
            "shop",
            "--pipeline",
            "junk",
        ])
        .env("ACKBAR_LOG", "error")
        .output()
        .unwrap();
    assert!(undeploy.status.success(), "{}", text(&undeploy.stderr));
    assert!(status.read_live().unwrap()[0]
        .pipeline("shop", "junk")
        .is_none());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forty_megabyte_python_component_deploys_through_the_chunked_store() {
    let fleet = Fleet::new().await;
    let python = std::fs::read(example("python", "orders")).unwrap();
    let large = ackbar_tests::wasm::pad_component(&python, 40 << 20);
    assert!(large.len() >= 40 << 20);
    let plugin = fleet.dir.path().join("python-orders.wasm");
    std::fs::write(&plugin, &large).unwrap();
    let _member = Member::start(&fleet.config);
    fleet.until("the member is live", |m| m.len() == 1).await;
    let deployed = fleet.deploy(
        &plugin,
        &["--spec", fleet.spec.to_str().unwrap(), "--timeout", "600"],
    );
    assert!(deployed.status.success(), "deploy the 40 MB component");
    let digest = ackbar::control::PluginDigest::of(&large);
    let members = fleet.until_assigned(1).await;
    let running = members[0].pipeline("shop", "orders").unwrap();
    assert_eq!(running.deployed.as_ref().unwrap().plugin, digest.as_str());
    fleet
        .cluster
        .produce(&[(0, r#"{"id": 1, "amount_cents": 1250, "currency": "EUR"}"#)])
        .await;
    fleet
        .until("the Python handler handled the order", |m| {
            m.iter()
                .filter_map(|m| m.pipeline("shop", "orders"))
                .any(|p| p.messages == 1 && p.traps == 0)
        })
        .await;
}
