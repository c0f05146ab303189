//! Handlers that produce: what an attempt sends is published only if the attempt settles the
//! message as handled, before its commit (at least once) or with it (exactly once, read back
//! with `read_committed`); refused sends; a failing output write holds the commit; and
//! components built before the `producer` interface keep working.

use crate::brokers::BrokerKind;
use crate::support::{guest, message_on, repo_root, runtime, unique, Cluster};
use ackbar::config::{DeliveryGuarantee, PipelineConfig};
use ackbar::outcome::{CallEnd, Outcome};
use ackbar::outputs::OutputRules;
use ackbar::plugin::{CallContext, InstancePool, PluginLimits};
use ackbar::policy::AckPolicy;
use rdkafka::message::Headers as _;
use rdkafka::Message as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Every record of `topic` (read_committed): key → values, in order.
fn read(cluster: &Cluster, topic: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in ackbar_tests::kafka::read_topic(&cluster.bootstrap, topic, WAIT).expect("read topic") {
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        by_key
            .entry(text(m.key()))
            .or_default()
            .push(text(m.payload()));
    }
    by_key
}

#[test]
fn a_component_built_before_the_producer_interface_loads_and_handles_unchanged() {
    let fixture = repo_root().join("tests/fixtures/orders-wit-0.1.0-without-producer.wasm");
    let report = ackbar::plugin::inspect(&runtime(), &fixture).expect("loads");
    assert!(
        !report.imports.iter().any(|i| i.contains("producer")),
        "the fixture predates the producer interface: {:?}",
        report.imports
    );
    let plugin = runtime().load(&fixture, PluginLimits::default()).unwrap();
    let pool = InstancePool::new(Arc::new(plugin));
    let call = |payload: &str| {
        let message = message_on("orders", payload.as_bytes());
        ackbar::plugin::block_on(pool.call_with_outputs(&message, &Default::default()))
    };
    let (ok, sent) = call(r#"{"id":"o1","item":"book","quantity":2}"#);
    assert_eq!(ok, Outcome::returned(None));
    assert!(sent.records.is_empty());
    let (malformed, _) = call("not an order");
    assert_eq!(
        malformed.end,
        CallEnd::Returned(Some(ackbar::outcome::Decision::Reject))
    );
}

/// A guest that sends 10 records of 16 MiB (160 MiB in all, past its own 64 MiB of memory) gets
/// `limit-exceeded` each time; the host keeps none of them, and the call ends normally.
#[test]
fn sends_past_the_byte_bound_are_refused_without_holding_them() {
    let plugin = runtime()
        .load(
            &guest("fixture"),
            PluginLimits {
                memory_bytes: 64 << 20,
                // Each refused record is still copied out of the guest once: room for a loaded
                // machine.
                deadline: Duration::from_secs(60),
                ..PluginLimits::default()
            },
        )
        .unwrap();
    let pool = InstancePool::new(Arc::new(plugin));
    let message = message_on("in", b"send-big:out/16");
    let context = CallContext {
        outputs: Arc::new(OutputRules {
            topics: vec!["out".into()],
            ..OutputRules::default()
        }),
        ..CallContext::default()
    };
    let (outcome, sent) =
        ackbar::plugin::block_on(pool.call_with_outputs(&message, &Arc::new(context)));
    assert_eq!(
        outcome.end,
        CallEnd::Returned(Some(ackbar::outcome::Decision::Ack)),
        "{outcome:?}"
    );
    assert!(sent.records.is_empty());
    assert_eq!((sent.bytes, sent.refused.over_limit), (0, 10));
}

/// One message per cell of the outputs table, on one partition, under NACK_ON_ERROR with
/// `max_attempts = 2` and a dead-letter topic. Keys are `PARTITION/OFFSET`; values
/// `PARTITION/OFFSET/ATTEMPT`.
const CELLS: [(&str, Option<&str>); 11] = [
    ("send:OUT/ok", Some("0/0/1")),
    // Attempt 1 fails after its send; the redelivery's output is the one published.
    ("send:OUT/fail-until:2", Some("0/1/2")),
    ("send:OUT/trap", None),
    ("send:OUT/nack", None),
    ("send:OUT/reject", None),
    ("send:OUT/interrupt-ack", Some("0/5/1")),
    ("send:OUT/interrupt-nack", None),
    // Committed by the explicit ack, but a trap publishes nothing.
    ("send:OUT/ack-then-trap", None),
    ("send:OUT/fatal", None),
    // Refused: the handler returns a fatal error, and the message is dead-lettered.
    ("send:UNDECLARED/ok", None),
    // 150 sends of 1 KiB: the first 100 (max_outputs_per_call) are accepted.
    ("send-many:OUT/150", None),
];

/// Dead-lettered cells: trap, nack, reject and interrupt-nack exhaust or reject; fatal and the
/// refused send are rejected.
const DEAD_LETTERED: [i64; 6] = [2, 3, 4, 6, 8, 9];

async fn outputs_follow_the_attempt(broker: BrokerKind, delivery: DeliveryGuarantee) {
    let cluster = Cluster::on(broker, 1).await;
    let (out, dlq) = (unique("out"), unique("dlq"));
    cluster.add_topic(&out, 1).await;
    cluster.add_topic(&dlq, 1).await;
    let payloads: Vec<String> = CELLS.iter().map(|(p, _)| p.replace("OUT", &out)).collect();
    let messages: Vec<(i32, &str)> = payloads.iter().map(|p| (0, p.as_str())).collect();
    cluster.produce(&messages).await;
    let mut config: PipelineConfig = cluster.config(AckPolicy::NackOnError);
    config.plugin = guest("fixture");
    config.max_attempts = Some(2);
    config.dead_letter_topic = Some(dlq.clone());
    config.outputs = OutputRules {
        topics: vec![out.clone()],
        ..OutputRules::default()
    };
    config.delivery = delivery;
    let mut run = cluster.start(config);
    let n = CELLS.len() as i64;
    run.until(WAIT, |seen| {
        (0..n).all(|o| {
            seen.iter()
                .any(|e| e.offset == o && e.action != ackbar::policy::Action::Redeliver)
        })
    })
    .await;
    // The last cell's 100 outputs are written (or its transaction commits) after its event.
    cluster.until_committed(&[Some(n)], WAIT).await;
    run.stop().await;

    let written = read(&cluster, &out);
    for (offset, (payload, expected)) in CELLS.iter().enumerate() {
        if payload.starts_with("send-many") {
            continue;
        }
        let key = format!("0/{offset}");
        let got = written.get(&key).cloned().unwrap_or_default();
        let want: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
        assert_eq!(got, want, "{payload}: what {out} has under key {key}");
    }
    let many: Vec<&String> = written.keys().filter(|k| !k.contains('/')).collect();
    assert_eq!(many.len(), 100, "send-many: max_outputs_per_call records");
    let letters = ackbar_tests::kafka::read_topic(&cluster.bootstrap, &dlq, WAIT).unwrap();
    let mut dead: Vec<i64> = letters
        .iter()
        .map(|m| {
            let h = m.headers().expect("ackbar headers");
            let offset = (0..h.count())
                .map(|i| h.get(i))
                .find(|h| h.key == "ackbar-original-offset")
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok());
            offset.expect("original offset header")
        })
        .collect();
    dead.sort();
    assert_eq!(dead, DEAD_LETTERED, "dead letters, once each");

    // What each delivery reported: sent, and whether it was published.
    let attempt = |offset: i64, attempt: u32| {
        run.seen
            .iter()
            .find(|e| e.offset == offset && e.attempt == attempt)
            .unwrap_or_else(|| panic!("delivery {offset}#{attempt}: {:?}", run.summary()))
    };
    assert_eq!(
        (attempt(1, 1).outputs, attempt(1, 1).outputs_published),
        (1, false)
    );
    assert_eq!(
        (attempt(1, 2).outputs, attempt(1, 2).outputs_published),
        (1, true)
    );
    assert_eq!(
        (attempt(9, 1).outputs, attempt(9, 1).outputs_published),
        (0, false)
    );
    assert_eq!(
        (attempt(10, 1).outputs, attempt(10, 1).outputs_published),
        (100, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_follow_the_attempt_at_least_once_on_the_embedded_broker() {
    outputs_follow_the_attempt(BrokerKind::Embedded, DeliveryGuarantee::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_follow_the_attempt_at_least_once_on_kafka() {
    outputs_follow_the_attempt(BrokerKind::Kafka, DeliveryGuarantee::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_follow_the_attempt_exactly_once_on_kafka() {
    outputs_follow_the_attempt(BrokerKind::Kafka, DeliveryGuarantee::ExactlyOnce).await;
}

/// Produce requests fail for a while: the handler has run, but its offset is not committed
/// before its output is on the broker, and then both are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_output_write_holds_the_commit_until_the_output_is_written() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = Cluster::new(1);
    let out = unique("out");
    cluster.add_topic(&out, 1).await;
    let payload = format!("send:{out}/ok");
    cluster.produce(&[(0, payload.as_str())]).await;
    let broker = cluster.embedded.as_ref().unwrap();
    broker
        .request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 50],
        )
        .unwrap();
    let mut config = cluster.config(AckPolicy::Ack);
    config.outputs = OutputRules {
        topics: vec![out.clone()],
        ..OutputRules::default()
    };
    config.output_timeout = Duration::from_millis(300);
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| !seen.is_empty()).await;
    let mut held = 0;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        // Committed first, then read: a commit seen here was made before this read.
        let Ok(committed) = cluster.try_committed() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let written = read(&cluster, &out).len();
        assert!(
            committed == vec![None] || written == 1,
            "offset committed ({committed:?}) before the output was written"
        );
        if committed == vec![Some(1)] {
            break;
        }
        if written == 0 {
            held += 1;
        }
        assert!(std::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held > 0, "the write never failed long enough to be seen");
    let handle = run.handle.as_ref().unwrap();
    assert!(handle.fault_warnings() >= 1, "the failing write was logged");
    run.stop().await;
    assert_eq!(read(&cluster, &out).len(), 1, "written once");
}

/// A transaction that cannot commit (one of its records goes to a partition that does not
/// exist) is aborted: nothing of it is visible to a `read_committed` reader, its messages are
/// delivered again from the first one, and nothing is committed past the failing one. (After the
/// rewind the good message may commit in a transaction of its own, exactly once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_delivers_its_messages_again_and_shows_nothing() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let out = unique("out");
    cluster.add_topic(&out, 1).await;
    let (good, bad) = (format!("send:{out}/ok"), format!("send:{out}@7/ok"));
    cluster
        .produce(&[(0, good.as_str()), (0, bad.as_str())])
        .await;
    let mut config = cluster.config(AckPolicy::Ack);
    config.outputs = OutputRules {
        topics: vec![out.clone()],
        ..OutputRules::default()
    };
    config.delivery = DeliveryGuarantee::ExactlyOnce;
    // Both messages in the first transaction: it closes at its second message, not by time.
    config.transactions.max_messages = 2;
    config.transactions.max_age = Duration::from_secs(600);
    let mut run = cluster.start(config);
    run.until(WAIT, |seen| {
        seen.iter().filter(|e| e.offset == 1).count() >= 3
    })
    .await;
    run.stop().await;
    let firsts: Vec<u32> = run.deliveries(0, 0).iter().map(|e| e.attempt).collect();
    assert!(
        firsts.len() >= 2 && firsts.iter().all(|a| *a == 1),
        "the aborted transaction's first message is delivered again, as new: {firsts:?}"
    );
    let committed = cluster.committed();
    assert!(
        committed == vec![None] || committed == vec![Some(1)],
        "nothing committed past the failing message: {committed:?}"
    );
    let written = read(&cluster, &out);
    assert!(!written.contains_key("0/1"), "{written:?}");
    let expected_good: Vec<String> = match committed[0] {
        Some(_) => vec!["0/0/1".into()],
        None => Vec::new(),
    };
    assert_eq!(
        written.get("0/0").cloned().unwrap_or_default(),
        expected_good,
        "the good message's output is visible once if it committed, else not at all"
    );
}

/// Exactly once, a message that keeps failing does not hold back the ones before it: what
/// settled commits (outputs visible, offset committed) before the failing message waits for its
/// redelivery, although the transaction is far from full or old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_does_not_hold_back_the_transaction_before_it() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    let out = unique("out");
    cluster.add_topic(&out, 1).await;
    let (good, failing) = (format!("send:{out}/ok"), format!("send:{out}/error"));
    cluster
        .produce(&[(0, good.as_str()), (0, failing.as_str())])
        .await;
    let mut config = cluster.config(AckPolicy::NackOnError);
    config.outputs = OutputRules {
        topics: vec![out.clone()],
        ..OutputRules::default()
    };
    config.delivery = DeliveryGuarantee::ExactlyOnce;
    // Neither full nor old while the test runs.
    config.transactions.max_messages = 10_000;
    config.transactions.max_age = Duration::from_secs(60);
    let mut run = cluster.start(config);
    cluster.until_committed(&[Some(1)], WAIT).await;
    let written = read(&cluster, &out);
    assert_eq!(written.get("0/0").cloned(), Some(vec!["0/0/1".to_string()]));
    assert!(!written.contains_key("0/1"), "{written:?}");
    run.until(WAIT, |seen| {
        seen.iter().filter(|e| e.offset == 1).count() >= 3
    })
    .await;
    run.stop().await;
    assert_eq!(
        cluster.committed(),
        vec![Some(1)],
        "the failing message stays uncommitted"
    );
    assert!(!read(&cluster, &out).contains_key("0/1"));
}
