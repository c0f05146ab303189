//! Batches: several messages in one sandbox call, each bounded and settled as if it had a call
//! of its own. Each test runs on the fixture of world `packed-batch-handler` (the batch as one
//! buffer) and on the same fixture as it was built for world `batch-handler` (the batch as a
//! list of messages), kept in `tests/fixtures`.

use crate::support::{guest, runtime, Cluster};
use ackbar::bindings::{Header, Message};
use ackbar::config::Backoff;
use ackbar::outcome::{CallEnd, TrapKind};
use ackbar::plugin::{
    BatchCall, CallContext, Finished, InstancePool, PluginLimits, MAX_BATCH_TIME,
};
use ackbar::policy::{AckPolicy, Action, DeliveryRules};
use ackbar_tests::repo_root;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(120);

/// A batch time no test reaches.
const LONG: Duration = Duration::from_secs(600);

/// The fixture built for world `batch-handler`, before world `packed-batch-handler` existed.
fn kept_fixture() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/fixture-batch-handler-0.1.0.wasm")
}

/// A pool of each fixture, named by its batch export.
fn pools(limits: PluginLimits) -> [(&'static str, InstancePool); 2] {
    let pool = |path: &std::path::Path| {
        let plugin = runtime().load(path, limits).expect("fixture loads");
        InstancePool::new(Arc::new(plugin))
    };
    [
        ("handle-packed-batch", pool(&guest("fixture"))),
        ("handle-batch", pool(&kept_fixture())),
    ]
}

fn rules(policy: AckPolicy) -> DeliveryRules {
    DeliveryRules {
        policy,
        max_attempts: None,
        dead_letters: false,
        backoff: Backoff::default(),
    }
}

fn with_dead_letters(policy: AckPolicy) -> DeliveryRules {
    DeliveryRules {
        dead_letters: true,
        ..rules(policy)
    }
}

fn messages(payloads: &[&str]) -> Vec<Message> {
    payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| Message {
            topic: "t".into(),
            partition: 0,
            offset: offset as i64,
            timestamp: None,
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
            headers: vec![],
            attempt: 1,
        })
        .collect()
}

/// One `handle-batch` call on `payloads` (offsets 0, 1, …): the messages it handed back, in order.
/// Batches here may run for minutes, to see each message's own bounds.
fn batch_with(
    pool: &InstancePool,
    payloads: &[&str],
    rules: DeliveryRules,
    stop: CancellationToken,
    max_time: Duration,
) -> Vec<Finished> {
    let context = Arc::new(CallContext::default());
    call_batch(pool, &messages(payloads), rules, stop, max_time, &context)
}

/// One batch call of `pool` on `messages` from `context`: what the guest finished, in order.
fn call_batch(
    pool: &InstancePool,
    messages: &[Message],
    rules: DeliveryRules,
    stop: CancellationToken,
    max_time: Duration,
    context: &Arc<CallContext>,
) -> Vec<Finished> {
    let spans = vec![tracing::Span::none(); messages.len()].into();
    let (sink, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let batch = BatchCall::new(messages, spans, rules, stop, sink).with_max_time(max_time);
    ackbar::plugin::block_on(pool.call_batch(messages, batch, context));
    let mut got = Vec::new();
    while let Ok(done) = finished.try_recv() {
        got.push(done);
    }
    got
}

/// One `handle-batch` call of `pool` on `payloads` under `policy`: what the guest finished.
pub(crate) fn batch(pool: &InstancePool, payloads: &[&str], policy: AckPolicy) -> Vec<Finished> {
    batch_with(
        pool,
        payloads,
        rules(policy),
        CancellationToken::new(),
        LONG,
    )
}

pub(crate) fn labels(finished: &[Finished]) -> Vec<String> {
    finished.iter().map(|f| f.outcome.label()).collect()
}

#[test]
fn a_batch_hands_back_every_message_in_order_from_one_instance() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        assert!(pool.batches());
        let got = batch(
            &pool,
            &["ok", "return-reject", "ack", "error"],
            AckPolicy::Ack,
        );
        assert_eq!(labels(&got), ["ok", "returned:reject", "ack+ok", "error"]);
        // The next batch runs on the same instance.
        assert_eq!(
            labels(&batch(&pool, &["ok", "ok"], AckPolicy::Ack)),
            ["ok", "ok"]
        );
        assert_eq!(pool.instances_created(), 1);
    }
}

#[test]
fn each_fixture_is_of_the_world_it_is_kept_for() {
    let exports =
        |path: &std::path::Path| ackbar::plugin::inspect(&runtime(), path).unwrap().exports;
    assert!(exports(&guest("fixture")).contains(&"handle-packed-batch".to_string()));
    let kept = exports(&kept_fixture());
    assert!(kept.contains(&"handle-batch".to_string()), "{kept:?}");
    assert!(
        !kept.contains(&"handle-packed-batch".to_string()),
        "{kept:?}"
    );
}

/// What the guest sees of each message of a packed batch is what the host had: every field,
/// with keys, payloads and header values absent, empty and set, repeated header names, names
/// that are not ASCII, binary values, and a payload larger than the rest of the batch.
#[test]
fn every_field_of_a_packed_batch_reaches_the_guest() {
    let message = |offset: i64, timestamp, key, payload: Vec<u8>, headers, attempt| Message {
        topic: "orders".into(),
        partition: 3,
        offset,
        timestamp,
        key,
        payload: Some(payload),
        headers,
        attempt,
    };
    let header = |key: &str, value: Option<&[u8]>| Header {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
    };
    let mut large = b"mirror:".to_vec();
    large.extend((0..40_000u32).map(|i| (i % 251) as u8));
    let messages = vec![
        message(
            5,
            Some(1_700_000_000_000),
            None,
            b"mirror".to_vec(),
            vec![],
            1,
        ),
        message(
            6,
            None,
            Some(vec![]),
            "mirror:ü\0".as_bytes().to_vec(),
            vec![
                header("dup", Some(b"first")),
                header("none", None),
                header("dup", Some(b"second")),
                header("empty", Some(b"")),
            ],
            2,
        ),
        message(
            7,
            Some(0),
            Some((0..=255).collect()),
            large,
            vec![header("é", Some(&[0xff, 0]))],
            1,
        ),
    ];
    let plugin = runtime()
        .load(&guest("fixture"), PluginLimits::default())
        .unwrap();
    let pool = InstancePool::new(Arc::new(plugin));
    let context = Arc::new(CallContext {
        outputs: Arc::new(ackbar::outputs::OutputRules {
            topics: vec!["mirror".into()],
            ..Default::default()
        }),
        ..CallContext::default()
    });
    let stop = CancellationToken::new();
    let finished = call_batch(
        &pool,
        &messages,
        rules(AckPolicy::Ack),
        stop,
        LONG,
        &context,
    );
    assert_eq!(finished.len(), messages.len(), "every message finished");
    for (message, done) in messages.iter().zip(&finished) {
        assert_eq!(done.outcome.label(), "ok");
        let [mirrored] = &done.outputs.records[..] else {
            panic!("one record: {:?}", done.outputs);
        };
        let seen = format!(
            "orders/3/{}/{}/{}",
            message.offset,
            message.attempt,
            message.timestamp.map_or("none".into(), |t| t.to_string())
        );
        let mut headers = message.headers.clone();
        headers.push(header("mirrored", Some(seen.as_bytes())));
        assert_eq!(mirrored.key, message.key, "offset {}", message.offset);
        assert_eq!(
            mirrored.payload, message.payload,
            "offset {}",
            message.offset
        );
        assert_eq!(mirrored.headers, headers, "offset {}", message.offset);
    }
}

#[test]
fn a_batch_stops_after_the_first_message_that_does_not_commit() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        // Under NACK_ON_ERROR the error is redelivered: what follows it must wait for it.
        let got = batch(&pool, &["ok", "error", "ok"], AckPolicy::NackOnError);
        assert_eq!(labels(&got), ["ok", "error"]);
        let got = batch(&pool, &["ok", "nack", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "nack+ok"]);
        // A reject is dead-lettered before what follows it is handled; without a dead-letter
        // topic it just commits.
        let (dead_letters, stop) = (with_dead_letters(AckPolicy::Ack), CancellationToken::new());
        let got = batch_with(&pool, &["reject", "ok"], dead_letters, stop, LONG);
        assert_eq!(labels(&got), ["reject+ok"]);
        let got = batch(&pool, &["reject", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["reject+ok", "ok"]);
        // Under ACK an error commits: the batch goes on.
        let got = batch(&pool, &["ok", "error", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "error", "ok"]);
        assert_eq!(pool.instances_created(), 1, "stopping is not a trap");
    }
}

#[test]
fn a_trap_or_an_interrupt_ends_only_the_message_it_hit() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        let got = batch(&pool, &["ok", "trap", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "trap:panic"]);
        let got = batch(&pool, &["ok", "interrupt-ack", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "interrupt:ack"]);
        assert_eq!(pool.instances_created(), 2, "each ended its instance");
        assert_eq!(pool.idle_instances(), 0);
    }
}

#[test]
fn a_batch_that_returns_without_finishing_a_message_traps_on_it() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        let got = batch(&pool, &["ok", "batch-return", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "trap:other"]);
        match &got[1].outcome.end {
            CallEnd::Trapped { detail, .. } => assert!(
                detail.contains(&format!(
                    "`{export}` returned without calling `batch.finish`"
                )),
                "{detail}"
            ),
            end => panic!("{end:?}"),
        }
    }
}

#[test]
fn each_message_of_a_batch_has_its_own_deadline() {
    for (export, pool) in pools(PluginLimits {
        deadline: Duration::from_millis(2000),
        ..PluginLimits::default()
    }) {
        eprintln!("through `{export}`");
        // 2.4 s in all, 0.6 s each: none reaches its deadline.
        let got = batch(&pool, &["sleep:600"; 4], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok"; 4]);
        // Spinning in guest code, and waiting in a host call: each cut at its own deadline.
        let got = batch(&pool, &["sleep:600", "loop", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "trap:deadline"]);
        let got = batch(&pool, &["sleep:600", "sleep:60000", "ok"], AckPolicy::Ack);
        assert_eq!(labels(&got), ["ok", "trap:deadline"]);
        match &got[1].outcome.end {
            CallEnd::Trapped { kind, detail, .. } => {
                assert_eq!(*kind, TrapKind::Deadline);
                assert!(detail.contains("waited in a host call"), "{detail}");
            }
            end => panic!("{end:?}"),
        }
    }
}

#[test]
fn each_message_of_a_batch_has_its_own_fuel() {
    use ackbar::plugin::PluginRuntime;
    let limits = PluginLimits {
        fuel: Some(20_000_000),
        // Fuel, not the clock, ends a call, however slow the machine.
        deadline: Duration::from_secs(60),
        ..PluginLimits::default()
    };
    let metered = PluginRuntime::with_options(None, true).unwrap();
    let pool = InstancePool::new(Arc::new(metered.load(&guest("fixture"), limits).unwrap()));
    let single = |payload: &str| {
        let message = &messages(&[payload])[0];
        ackbar::plugin::block_on(pool.call(message, &Arc::default()))
    };
    // The fewest acks one call cannot afford, to within a factor of two.
    let mut acks = 1_000u64;
    let out_of_fuel = |payload: &str| {
        matches!(
            single(payload).end,
            CallEnd::Trapped {
                kind: TrapKind::Fuel,
                ..
            }
        )
    };
    while !out_of_fuel(&format!("ack-many:{acks}")) {
        acks *= 2;
        assert!(acks < 1 << 30, "ack-many never ran out of fuel");
    }
    let half = format!("ack-many:{}", acks / 2);
    assert_eq!(single(&half).label(), "ack+ok", "half of it fits one call");
    // Four halves use more than one call's fuel, at least twice over.
    let got = batch(&pool, &[half.as_str(); 4], AckPolicy::Ack);
    assert_eq!(labels(&got), ["ack+ok"; 4]);
}

#[test]
fn a_batch_starts_no_message_after_its_time() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        let (rules, stop) = (rules(AckPolicy::Ack), CancellationToken::new());
        assert!(MAX_BATCH_TIME < Duration::from_millis(30));
        let got = batch_with(
            &pool,
            &["sleep:30", "ok", "ok"],
            rules,
            stop,
            MAX_BATCH_TIME,
        );
        assert_eq!(labels(&got), ["ok"]);
    }
}

#[test]
fn a_stopped_worker_starts_no_further_message_of_a_batch() {
    for (export, pool) in pools(PluginLimits::default()) {
        eprintln!("through `{export}`");
        let stop = CancellationToken::new();
        stop.cancel();
        let got = batch_with(
            &pool,
            &["ok", "ok", "ok"],
            rules(AckPolicy::Ack),
            stop,
            LONG,
        );
        assert_eq!(labels(&got), ["ok"], "the message under way finishes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_messages_are_handled_in_batches_in_order_and_a_redelivery_still_comes_first() {
    let cluster = Cluster::new(1);
    let mut payloads = vec!["ok"; 200];
    payloads[50] = "fail-until:3";
    payloads[120] = "ack-then-trap";
    payloads[121] = "interrupt-ack";
    payloads[150] = "batch-return";
    let messages: Vec<(i32, &str)> = payloads.iter().map(|p| (0, *p)).collect();
    cluster.produce(&messages).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.backoff.initial_ms = 10;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| {
        seen.iter()
            .filter(|r| r.action != Action::Redeliver)
            .count()
            >= 200
    })
    .await;
    cluster.until_committed(&[Some(200)], WAIT).await;
    run.stop().await;
    let stats = run.final_stats.expect("stopped");
    assert!(
        stats.batch_calls > 0 && stats.batched_messages > stats.batch_calls,
        "the waiting messages went into batches: {stats:?}"
    );
    // Every delivery in offset order, attempts in order: nothing after a message that waits
    // for its redelivery is handled before it settles.
    let order: Vec<(i64, u32)> = run.seen.iter().map(|r| (r.offset, r.attempt)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "{:?}", run.summary());
    assert_eq!(
        run.deliveries(0, 50)
            .iter()
            .map(|r| r.attempt)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let trap = run.deliveries(0, 120);
    assert_eq!(trap.len(), 1, "acked before it trapped");
    assert_eq!(trap[0].outcome.label(), "ack+trap:panic");
    assert_eq!(run.deliveries(0, 121)[0].outcome.label(), "interrupt:ack");
    // In a batch, a call that returns without finishing it traps it, and it is redelivered
    // alone through `handle`; when a fetch happened to bring it alone, it went through `handle`
    // at once. Which of the two depends on how the broker's fetches fell (the batch-level
    // behaviour is tested on its own above).
    let returned: Vec<String> = run
        .deliveries(0, 150)
        .iter()
        .map(|r| r.outcome.label())
        .collect();
    assert!(
        returned == ["trap:other", "ok"] || returned == ["ok"],
        "{returned:?}"
    );
    assert_eq!(run.deliveries(0, 199).len(), 1);
}

/// A guest still running after its last `finish` (here: sleeping in a host call) keeps its
/// instance: the worker waits for the call to end before it goes on, so the instance goes back
/// to the pool (and the call's guest time is charged) instead of being dropped with the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_runs_on_after_its_last_message_keeps_its_instance() {
    let cluster = Cluster::new(1);
    let messages: Vec<(i32, &str)> = (0..30).map(|_| (0, "batch-linger:50")).collect();
    cluster.produce(&messages).await;
    let mut config = cluster.config(AckPolicy::Ack);
    // Several batches, each needing the instance the one before it used.
    config.max_batch = 5;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.len() >= 30).await;
    cluster.until_committed(&[Some(30)], WAIT).await;
    let handle = run.handle.as_ref().expect("running");
    let (stats, instances) = (handle.stats(), handle.instances_created());
    run.stop().await;
    assert!(stats.batch_calls > 0, "{stats:?}");
    assert_eq!(instances, 1, "one instance for every call: {stats:?}");
}

/// At least once, the messages a batch settled move the commit point before a later message
/// waits for its redelivery: the worker finishes its run of settled messages before anything
/// that waits, instead of holding them until the batch is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_what_it_settled_while_a_later_message_waits_for_its_redelivery() {
    let cluster = Cluster::new(1);
    let mut payloads = vec!["ok"; 20];
    // Fails once, in the batch or alone (a batch also ends at its time bound): redelivered
    // after the backoff.
    payloads[10] = "fail-until:2";
    let messages: Vec<(i32, &str)> = payloads.iter().map(|p| (0, *p)).collect();
    cluster.produce(&messages).await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    // The redelivery waits longer than the test runs.
    config.backoff.initial_ms = 3_600_000;
    config.backoff.max_ms = 3_600_000;
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| seen.iter().any(|r| r.offset == 10))
        .await;
    cluster.until_committed(&[Some(10)], WAIT).await;
    let handle = run.handle.as_ref().expect("running");
    let stats = handle.stats();
    run.stop().await;
    assert!(
        stats.batch_calls > 0,
        "the waiting messages went into a batch: {stats:?}"
    );
}
