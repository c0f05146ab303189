//! Share pipelines (`group_type = "share"`) on Apache Kafka 4.4: every policy × outcome, checked
//! from the broker's side; three `ackbar run` members on one partition with a poison message;
//! a member killed with SIGKILL mid-stream.

use crate::brokers::BrokerKind;
use crate::cli::series;
use crate::crash::{field, Ackbar};
use crate::reload::{replace_atomically, variant, wait_for_version};
use crate::share_group::{configure_group, produce_compressed, still_available, PATIENCE};
use crate::support::http_get;
use crate::support::{guest, Cluster};
use crate::tenants::peak_concurrency;
use ackbar::config::{GroupType, Ordering, PipelineConfig, TenantLimits};
use ackbar::events::DeliveryEvent;
use ackbar::plugin::version_id;
use ackbar::policy::{AckPolicy, Action};
use ackbar::tenant::TenantBudget;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the deliveries of one record must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Delivered once and acknowledged ACCEPT: done on the broker.
    Accepted,
    /// Delivered once and acknowledged REJECT: done (archived) on the broker.
    Rejected,
    /// Released after each delivery: the broker delivers it again, counting (1, 2, 3, ...),
    /// and still has it when the pipeline stops.
    Released,
}
use Expect::*;

/// The fixture's verbs, one record each (offsets 0..9), and the outcome label of a delivery.
const OUTCOMES: [(&str, &str); 9] = [
    ("ok", "ok"),
    ("error", "error"),
    ("fatal", "fatal-error"),
    ("trap", "trap:panic"),
    ("reject", "reject+ok"),
    ("ack", "ack+ok"),
    ("nack", "nack+ok"),
    ("interrupt-ack", "interrupt:ack"),
    ("interrupt-nack", "interrupt:nack"),
];

fn share_config(cluster: &Cluster, policy: AckPolicy) -> PipelineConfig {
    let mut c = cluster.config(policy);
    c.group_type = GroupType::Share;
    c.ordering = Ordering::Unordered;
    c.max_in_flight = 8;
    c.kafka.clear();
    // Slow enough that a released record is not used up (the group's limit is 10) before the
    // test stops the pipeline, fast enough for three deliveries in about a second.
    c.backoff.initial_ms = 300;
    c.backoff.max_ms = 300;
    c
}

/// One row of the table: every outcome on one share pipeline at once (records settle
/// independently), then the broker's view of what is left.
async fn row(policy: AckPolicy, expect: [Expect; 9]) {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    configure_group(&cluster.group, &[("share.delivery.count.limit", "10")]).await;
    let payloads: Vec<(i32, &str)> = OUTCOMES.iter().map(|(p, _)| (0, *p)).collect();
    cluster.produce(&payloads).await;
    let mut run = cluster.start(share_config(&cluster, policy));
    run.until(PATIENCE, |seen| {
        expect.iter().enumerate().all(|(offset, e)| {
            let deliveries = seen.iter().filter(|d| d.offset == offset as i64).count();
            deliveries >= if *e == Released { 3 } else { 1 }
        })
    })
    .await;
    run.stop().await;

    let mut released = Vec::new();
    for (offset, ((payload, label), expect)) in OUTCOMES.iter().zip(expect).enumerate() {
        let offset = offset as i64;
        let deliveries = run.deliveries(0, offset);
        let what = format!("{policy} {payload}: {:?}", run.summary());
        assert_eq!(deliveries[0].outcome.label(), *label, "{what}");
        match expect {
            Accepted | Rejected => {
                assert_eq!(deliveries.len(), 1, "{what}");
                let action = if expect == Accepted {
                    Action::Commit
                } else {
                    Action::Reject
                };
                assert_eq!(deliveries[0].action, action, "{what}");
            }
            Released => {
                let attempts: Vec<u32> = deliveries.iter().map(|d| d.attempt).collect();
                assert_eq!(&attempts[..3], &[1, 2, 3], "{what}");
                assert!(
                    deliveries
                        .iter()
                        .all(|d| matches!(d.action, Action::Redeliver | Action::Nothing)),
                    "{what}"
                );
                released.push((offset, *attempts.last().unwrap()));
            }
        }
    }
    // The broker's side: accepted and rejected records are done; released ones are handed out
    // again, with a delivery count past every delivery the pipeline saw.
    let left = still_available(&cluster.group, &cluster.topic, OUTCOMES.len() as i64).await;
    assert_eq!(
        left.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        released.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        "{policy}: records still available on the broker {left:?}, released {released:?}"
    );
    for ((offset, count), (_, last_attempt)) in left.iter().zip(&released) {
        assert!(
            u32::from(*count) > *last_attempt,
            "{policy}: offset {offset} has delivery count {count} after attempt {last_attempt}"
        );
    }
}

// Columns: ok, error, fatal, trap, acker reject, acker ack, acker nack, interrupt(ack),
// interrupt(nack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual() {
    use Expect::{Accepted as A, Rejected as J, Released as R};
    row(AckPolicy::Manual, [R, R, R, R, J, A, R, A, R]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack() {
    use Expect::{Accepted as A, Rejected as J, Released as R};
    row(AckPolicy::Ack, [A, A, A, A, J, A, R, A, R]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_on_error() {
    use Expect::{Accepted as A, Rejected as J, Released as R};
    row(AckPolicy::RejectOnError, [A, J, J, J, J, A, R, A, R]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_on_error() {
    use Expect::{Accepted as A, Rejected as J, Released as R};
    // A `fatal` error cannot be fixed by a redelivery: rejected.
    row(AckPolicy::NackOnError, [A, R, J, R, J, A, R, A, R]).await;
}

/// With a dead-letter topic, the delivery that uses up `max_attempts` (counted by the broker)
/// writes the dead letter and then rejects the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_record_is_dead_lettered_then_rejected() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let dlq = crate::support::unique("dlq");
    cluster.add_topic(&dlq, 1).await;
    configure_group(&cluster.group, &[]).await;
    cluster.produce(&[(0, "error"), (0, "ok")]).await;
    let mut config = share_config(&cluster, AckPolicy::NackOnError);
    config.max_attempts = Some(3);
    config.dead_letter_topic = Some(dlq.clone());
    config.backoff.initial_ms = 20;
    config.backoff.max_ms = 20;
    let mut run = cluster.start(config);
    run.until(PATIENCE, |seen| {
        seen.iter()
            .any(|d| d.offset == 0 && d.action == Action::Reject)
    })
    .await;
    run.settle(Duration::from_millis(500)).await;
    run.stop().await;
    let attempts: Vec<(u32, Action)> = run
        .deliveries(0, 0)
        .iter()
        .map(|d| (d.attempt, d.action))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, Action::Redeliver),
            (2, Action::Redeliver),
            (3, Action::Reject)
        ]
    );
    let letters = ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, PATIENCE).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let left = still_available(&cluster.group, &cluster.topic, 2).await;
    assert!(left.is_empty(), "{left:?}");
}

/// A record whose output write fails for a while marks its partition as failing; once the write
/// succeeds and the record is accepted, the pipeline is ready again (it once stayed "stuck" for
/// good, and `/readyz` failed after `ready_stall_threshold_ms`). The write fails because the
/// output topic takes no record over 200 bytes, until its limit is raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_recovers_after_an_output_write_fails_for_a_while() {
    use rdkafka::admin::TopicReplication;
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    configure_group(&cluster.group, &[]).await;
    let out = crate::support::unique("out");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let topic = NewTopic::new(&out, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "200");
    for created in admin.create_topics(&[topic], &options).await.unwrap() {
        created.unwrap();
    }
    let payload = format!("send-many:{out}/1");
    cluster.produce(&[(0, payload.as_str())]).await;
    let mut config = share_config(&cluster, AckPolicy::Ack);
    config.outputs.topics = vec![out.clone()];
    config.output_timeout = Duration::from_secs(5);
    let mut run = cluster.start(config);
    let handle = run.handle.as_ref().unwrap();
    let health = handle.health();
    let stuck = |health: &ackbar::health::Health| {
        health
            .problems("p", Duration::ZERO)
            .iter()
            .any(|p| p.contains("stuck at offset 0"))
    };
    let deadline = Instant::now() + PATIENCE;
    while !stuck(&health) {
        assert!(
            Instant::now() < deadline,
            "the failing write was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raised =
        AlterConfig::new(ResourceSpecifier::Topic(&out)).set("max.message.bytes", "1048588");
    for altered in admin.alter_configs(&[raised], &options).await.unwrap() {
        altered.unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    while ackbar_tests::kafka::read_topic(&cluster.bootstrap, &out, PATIENCE)
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the output was never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled once its output is on the broker: nothing is stuck any more.
    let deadline = Instant::now() + PATIENCE;
    while stuck(&health) {
        assert!(
            Instant::now() < deadline,
            "still stuck after the write: {:?}",
            health.problems("p", Duration::ZERO)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.stop().await;
    let left = still_available(&cluster.group, &cluster.topic, 1).await;
    assert!(left.is_empty(), "accepted: {left:?}");
}

/// Acquisition locks (6 s for this group) are renewed while a handler runs past them (15 s)
/// and while a nacked record waits out its backoff (9 s): the slow record is delivered once and
/// accepted, and the nacked one is released only after its backoff, not taken back by the
/// broker when its lock runs out. A lock is renewed with half of it (3 s) left, a margin a
/// loaded machine's round trips to the broker stay within.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_renewed_while_a_handler_runs_and_while_a_redelivery_waits() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    configure_group(&cluster.group, &[("share.record.lock.duration.ms", "6000")]).await;
    cluster.produce(&[(0, "sleep:15000"), (0, "nack")]).await;
    let mut config = share_config(&cluster, AckPolicy::Ack);
    config.limits.deadline = Duration::from_secs(60);
    config.backoff.initial_ms = 9000;
    config.backoff.max_ms = 9000;
    let mut run = cluster.start(config);
    run.until(PATIENCE, |seen| {
        seen.iter().any(|d| d.offset == 0) && seen.iter().filter(|d| d.offset == 1).count() >= 2
    })
    .await;
    run.settle(Duration::from_millis(500)).await;
    run.stop().await;
    let slow = run.deliveries(0, 0);
    assert_eq!(slow.len(), 1, "{:?}", run.summary());
    assert_eq!((slow[0].attempt, slow[0].action), (1, Action::Commit));
    let nacked = run.deliveries(0, 1);
    assert_eq!(
        (nacked[0].attempt, nacked[1].attempt),
        (1, 2),
        "{:?}",
        run.summary()
    );
    // The second delivery comes after the backoff (a lower bound the pipeline enforces), not
    // when the first delivery's lock ran out.
    let gap = nacked[1].started - nacked[0].started;
    assert!(
        gap >= Duration::from_millis(9000),
        "redelivered after {gap:?}"
    );
    let left = still_available(&cluster.group, &cluster.topic, 2).await;
    assert_eq!(
        left.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        vec![1],
        "{left:?}"
    );
}

/// The tenant's bounds hold on a share pipeline: with one message in flight for the tenant, a
/// pipeline allowed 8 handles one record at a time, and gives every admission back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_hold_on_a_share_pipeline() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let payloads: Vec<(i32, &str)> = (0..20).map(|_| (0, "sleep:20")).collect();
    cluster.produce(&payloads).await;
    let config = share_config(&cluster, AckPolicy::Ack);
    let limits = TenantLimits {
        max_in_flight: 1,
        ..TenantLimits::default()
    };
    let budget = TenantBudget::new(&config.tenant, limits);
    let mut run = cluster.start_in(config, budget.clone());
    run.until(PATIENCE, |seen| seen.len() >= 20).await;
    run.stop().await;
    let all: Vec<&DeliveryEvent> = run.seen.iter().collect();
    assert_eq!(peak_concurrency(&all), 1, "{:?}", run.summary());
    assert_eq!(budget.messages_in_flight(), 0, "every admission given back");
    assert_eq!(budget.calls_running(), 0);
    let left = still_available(&cluster.group, &cluster.topic, 20).await;
    assert!(left.is_empty(), "{left:?}");
}

/// A new plugin version swapped in under a share pipeline handles the records after it; every
/// record is handled once and accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_a_share_pipeline_loses_nothing() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("handler.wasm");
    let (old, new) = (variant(0), variant(1));
    std::fs::write(&plugin, &old).unwrap();
    let mut config = share_config(&cluster, AckPolicy::Ack);
    config.plugin = plugin.clone();
    let mut run = cluster.start(config);
    let batch: Vec<(i32, &str)> = (0..50).map(|_| (0, "sleep:5")).collect();
    cluster.produce(&batch).await;
    run.until(PATIENCE, |seen| seen.len() >= 10).await;
    replace_atomically(&plugin, &new);
    wait_for_version(&run, &version_id(&new)).await;
    cluster.produce(&batch).await;
    run.until(PATIENCE, |seen| seen.len() >= 100).await;
    run.settle(Duration::from_millis(300)).await;
    run.stop().await;
    for offset in 0..100 {
        let deliveries = run.deliveries(0, offset);
        assert_eq!(deliveries.len(), 1, "offset {offset}: {:?}", run.summary());
        assert_eq!(deliveries[0].action, Action::Commit);
        if offset >= 50 {
            assert_eq!(&*deliveries[0].plugin_version, version_id(&new));
        }
    }
    let left = still_available(&cluster.group, &cluster.topic, 100).await;
    assert!(left.is_empty(), "{left:?}");
}

/// Batches compressed with every codec are read by a classic and by a share pipeline alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_topics_are_read_by_both_kinds_of_pipeline() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let records: Vec<ackbar::kafka::Record> = (0..5)
            .map(|_| ackbar::kafka::Record::new(0, "ok"))
            .collect();
        produce_compressed(&cluster.topic, codec, &records).await;
    }
    let classic = cluster.config(AckPolicy::Ack);
    let share_group = crate::support::unique("share-group");
    let mut share = share_config(&cluster, AckPolicy::Ack);
    share.group_id = Some(share_group.clone());
    let mut runs = [cluster.start(classic), cluster.start(share)];
    for run in &mut runs {
        run.until(PATIENCE, |seen| seen.len() >= 20).await;
    }
    for run in &mut runs {
        run.settle(Duration::from_millis(300)).await;
        run.stop().await;
        assert_eq!(run.seen.len(), 20, "{:?}", run.summary());
        assert!(run.seen.iter().all(|d| d.action == Action::Commit));
    }
    cluster.until_committed(&[Some(20)], PATIENCE).await;
    let left = still_available(&share_group, &cluster.topic, 20).await;
    assert!(left.is_empty(), "{left:?}");
}

/// Deliveries parsed from one `ackbar run`'s event lines: (offset, attempt, action).
type Seen = Arc<Mutex<Vec<(i64, u32, String)>>>;

/// One `ackbar run` member: the process, its deliveries, and its ops endpoint once serving.
struct Member {
    process: Ackbar,
    seen: Seen,
    ops: Arc<Mutex<Option<String>>>,
}

impl Member {
    fn start(config: &std::path::Path) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
            .args(["run", config.to_str().unwrap()])
            .env("ACKBAR_LOG", "warn,ackbar::events=debug,ackbar::cli=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ackbar run");
        let (seen, ops): (Seen, Arc<Mutex<Option<String>>>) = Default::default();
        let (seen_sink, ops_sink) = (seen.clone(), ops.clone());
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let offset = field(&line, "offset=").and_then(|o| o.parse().ok());
                let attempt = field(&line, "attempt=").and_then(|o| o.parse().ok());
                let action = field(&line, "action=");
                if let (Some(o), Some(a), Some(action)) = (offset, attempt, action) {
                    seen_sink.lock().unwrap().push((o, a, action.to_string()));
                } else if let Some(addr) = line
                    .split("serving /metrics, /healthz and /readyz on http://")
                    .nth(1)
                {
                    *ops_sink.lock().unwrap() = Some(addr.trim().to_string());
                } else {
                    println!("ackbar: {line}");
                }
            }
        });
        Member {
            process: Ackbar(child, None),
            seen,
            ops,
        }
    }

    /// Waits until `/readyz` says the member has joined the group and has partitions.
    async fn until_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let addr = self.ops.lock().unwrap().clone();
            if addr.is_some_and(|a| http_get(&a, "/readyz").0 == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "member not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The member's value of `ackbar_share_acknowledged_total{kind}` (or another share series).
    fn series(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let addr = self.ops.lock().unwrap().clone().expect("serving metrics");
        series(&http_get(&addr, "/metrics").1, name, labels).unwrap_or(0.0)
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.process.0.id().to_string()])
            .status()
            .unwrap();
        assert!(
            self.process.0.wait().unwrap().success(),
            "clean exit after SIGTERM"
        );
    }
}

/// An `ackbar run` config with one share pipeline on `cluster`'s topic.
fn member_config(cluster: &Cluster, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("ackbar.toml");
    std::fs::write(
        &path,
        format!(
            "brokers = \"{}\"\n[run]\nsummary_interval_secs = 0\nmetrics_addr = \"127.0.0.1:0\"\n\
             [[pipeline]]\nname = \"share\"\ntopics = [\"{}\"]\ngroup_id = \"{}\"\ngroup_type = \"share\"\n\
             ack_policy = \"NACK_ON_ERROR\"\nplugin = \"{}\"\nmax_in_flight = 2\n{extra}\n\
             [pipeline.backoff]\ninitial_ms = 20\nmax_ms = 20\n",
            cluster.bootstrap,
            cluster.topic,
            cluster.group,
            guest("fixture").display()
        ),
    )
    .unwrap();
    path
}

fn settled_offsets(members: &[&Member]) -> BTreeSet<i64> {
    members
        .iter()
        .flat_map(|m| m.seen.lock().unwrap().clone())
        .filter(|(_, _, action)| action == "commit" || action == "reject")
        .map(|(o, _, _)| o)
        .collect()
}

async fn until_all_settled(members: &[&Member], records: i64) {
    let deadline = Instant::now() + PATIENCE;
    while settled_offsets(members).len() < records as usize {
        assert!(
            Instant::now() < deadline,
            "settled {} of {records}",
            settled_offsets(members).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        settled_offsets(members),
        (0..records).collect::<BTreeSet<_>>(),
        "every record handled"
    );
}

async fn produce(cluster: &Cluster, payload: impl Fn(i64) -> &'static str, records: i64) {
    let records: Vec<ackbar::kafka::Record> = (0..records)
        .map(|i| ackbar::kafka::Record::new(0, payload(i)))
        .collect();
    ackbar::kafka::produce(&cluster.bootstrap, &cluster.topic, &records)
        .await
        .unwrap();
}

/// Three members on a one-partition topic all handle records; a poison record is released,
/// delivered again (to any member) up to `max_attempts` and dead-lettered, while the rest flow.
/// The members' metrics count every acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_one_partition_around_a_poison_record() {
    const RECORDS: i64 = 600;
    const POISON: i64 = 100;
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let dlq = crate::support::unique("dlq");
    cluster.add_topic(&dlq, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = member_config(
        &cluster,
        dir.path(),
        &format!("max_attempts = 4\ndead_letter_topic = \"{dlq}\""),
    );
    let members: Vec<Member> = (0..3).map(|_| Member::start(&config)).collect();
    for m in &members {
        m.until_ready().await;
    }
    // Each record takes 30 ms and a member handles two at once: seconds of work, so every
    // member gets some however late it fetches on a loaded machine.
    produce(
        &cluster,
        |i| if i == POISON { "error" } else { "sleep:30" },
        RECORDS,
    )
    .await;
    let all: Vec<&Member> = members.iter().collect();
    until_all_settled(&all, RECORDS).await;
    for (i, m) in members.iter().enumerate() {
        assert!(
            !m.seen.lock().unwrap().is_empty(),
            "member {i} handled nothing"
        );
    }
    let poison: Vec<(u32, String)> = members
        .iter()
        .flat_map(|m| m.seen.lock().unwrap().clone())
        .filter(|(o, _, _)| *o == POISON)
        .map(|(_, a, action)| (a, action))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(
        poison,
        vec![
            (1, "redeliver".to_string()),
            (2, "redeliver".to_string()),
            (3, "redeliver".to_string()),
            (4, "reject".to_string())
        ]
    );
    let letters = ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, PATIENCE).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");

    // Acknowledgement outcomes are counted once per commit interval (1 s).
    let total = |name: &str, labels: &[(&str, &str)]| -> f64 {
        members.iter().map(|m| m.series(name, labels)).sum()
    };
    let ack = "ackbar_share_acknowledged_total";
    let deadline = Instant::now() + PATIENCE;
    while total(ack, &[("kind", "accept")]) < (RECORDS - 1) as f64
        || total(ack, &[("kind", "reject")]) < 1.0
    {
        assert!(Instant::now() < deadline, "acknowledgements not counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total(ack, &[("kind", "accept")]), (RECORDS - 1) as f64);
    assert_eq!(total(ack, &[("kind", "reject")]), 1.0);
    assert_eq!(total(ack, &[("kind", "release")]), 3.0);
    assert_eq!(
        total("ackbar_share_acquired_total", &[]),
        (RECORDS + 3) as f64
    );
    assert_eq!(total("ackbar_share_lock_expiries_total", &[]), 0.0);
    for m in members {
        m.stop();
    }
    let left = still_available(&cluster.group, &cluster.topic, RECORDS).await;
    assert!(left.is_empty(), "{left:?}");
}

/// A member killed with SIGKILL mid-stream loses the records it held to the others, which
/// handle them (with a higher delivery count); none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_killed_member_go_to_the_others() {
    const RECORDS: i64 = 400;
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    // Short locks: records a dead member held come back soon whatever the broker notices.
    configure_group(&cluster.group, &[("share.record.lock.duration.ms", "5000")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = member_config(&cluster, dir.path(), "");
    let mut members: Vec<Member> = (0..3).map(|_| Member::start(&config)).collect();
    for m in &members {
        m.until_ready().await;
    }
    // About 7 s of work over three members: the victim still holds records when it dies.
    produce(&cluster, |_| "sleep:100", RECORDS).await;
    let deadline = Instant::now() + PATIENCE;
    while members[0].seen.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "member 0 handled nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut victim = members.remove(0);
    victim.process.0.kill().unwrap(); // SIGKILL
    victim.process.0.wait().unwrap();
    let mut all: Vec<&Member> = members.iter().collect();
    all.push(&victim);
    until_all_settled(&all, RECORDS).await;
    // What the victim held when it died (handling, or handled and not yet acknowledged) went
    // to the others with a delivery count above 1.
    let redelivered = members
        .iter()
        .flat_map(|m| m.seen.lock().unwrap().clone())
        .filter(|(_, attempt, _)| *attempt > 1)
        .count();
    assert!(redelivered > 0, "no record of the killed member came back");
    for m in members {
        m.stop();
    }
    let left = still_available(&cluster.group, &cluster.topic, RECORDS).await;
    assert!(left.is_empty(), "{left:?}");
}
