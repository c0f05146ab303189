//! The example handlers of every language (guest-examples/README.md) against every ack policy,
//! on the embedded broker: the same order events must be handled the same way, with the same
//! deliveries and the same committed offset, whichever language the handler is written in.

use crate::support::{example, Cluster};
use ackbar::policy::{AckPolicy, Action};
use std::time::Duration;

/// The order events, in partition order. The poison order comes last: under NACK_ON_ERROR it is
/// redelivered forever and nothing after it would be handled.
const ORDERS: [&str; 7] = [
    r#"{"id":"o1","item":"book","quantity":2}"#,
    "not json",
    r#"{"id":"o4","item":"pen","quantity":0}"#,
    r#"{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}"#,
    r#"{"id":"o5","item":"duplicate","quantity":1}"#,
    r#"{"id":"o6","item":"lamp","quantity":3,"warehouse":"busy"}"#,
    r#"{"id":"o3","item":"poison","quantity":1}"#,
];
const POISON: i64 = 6;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Handler {
    Orders,
    Manual,
}

/// The outcome labels of the deliveries of each order but the poison one, in attempt order.
fn expected_deliveries(handler: Handler, policy: AckPolicy) -> [Vec<&'static str>; 6] {
    let nack_on_error = policy == AckPolicy::NackOnError;
    match handler {
        Handler::Orders => [
            vec!["ok"],
            vec!["returned:reject"],
            vec!["returned:reject"],
            if nack_on_error {
                vec!["error", "error", "ok"]
            } else {
                vec!["error"]
            },
            vec!["ok"],
            vec!["ok"],
        ],
        Handler::Manual => [
            vec!["ack+ok"],
            vec!["reject+ok"],
            vec!["reject+ok"],
            vec!["nack+ok", "nack+ok", "ack+ok"],
            vec!["interrupt:ack"],
            vec!["interrupt:nack", "ack+ok"],
        ],
    }
}

/// The group's committed offset once everything before the poison order is handled.
fn expected_commit(handler: Handler, policy: AckPolicy) -> Option<i64> {
    use AckPolicy::*;
    match (handler, policy) {
        // Nothing settles the poison order; under NACK_ON_ERROR it is redelivered.
        (Handler::Manual, Manual | NackOnError) => Some(POISON),
        (Handler::Orders, NackOnError) => Some(POISON),
        // The last message anyone settled is the zero-quantity order the handler rejected.
        (Handler::Orders, Manual) => Some(3),
        (_, AckFirst | Ack | RejectOnError) => Some(POISON + 1),
    }
}

async fn check(language: &str, handler: Handler, policy: AckPolicy) {
    let name = match handler {
        Handler::Orders => "orders",
        Handler::Manual => "manual",
    };
    let plugin = example(language, name);
    let cluster = Cluster::new(1);
    let messages: Vec<(i32, &str)> = ORDERS.iter().map(|m| (0, *m)).collect();
    cluster.produce(&messages).await;
    let mut config = cluster.config(policy);
    config.plugin = plugin;
    // Interpreted guests (Python, JavaScript) start slower; the deadline is not under test here.
    config.limits.deadline = Duration::from_secs(10);
    let mut run = cluster.start(config);
    let poison_deliveries = if policy == AckPolicy::NackOnError {
        2
    } else {
        1
    };
    run.until(Duration::from_secs(120), |seen| {
        seen.iter().filter(|r| r.offset == POISON).count() >= poison_deliveries
    })
    .await;
    run.settle(Duration::from_millis(300)).await;
    run.stop().await;

    let context = format!("{language}/{name} under {policy}: {:#?}", run.summary());
    for (offset, expected) in expected_deliveries(handler, policy).iter().enumerate() {
        let seen = run.deliveries(0, offset as i64);
        let labels: Vec<String> = seen.iter().map(|r| r.outcome.label()).collect();
        assert_eq!(&labels, expected, "offset {offset}; {context}");
        let attempts: Vec<u32> = seen.iter().map(|r| r.attempt).collect();
        let in_order: Vec<u32> = (1..=expected.len() as u32).collect();
        assert_eq!(attempts, in_order, "offset {offset}; {context}");
        let redelivered = seen
            .iter()
            .filter(|r| r.action == Action::Redeliver)
            .count();
        assert_eq!(
            redelivered,
            expected.len() - 1,
            "offset {offset}; {context}"
        );
    }
    let poison = run.deliveries(0, POISON);
    assert!(
        poison.iter().all(|r| r.outcome.label() == "trap:panic"),
        "{context}"
    );
    if policy != AckPolicy::NackOnError {
        assert_eq!(poison.len(), 1, "{context}");
    }
    assert_eq!(
        cluster.committed(),
        vec![expected_commit(handler, policy)],
        "committed offset; {context}"
    );
}

/// The Go SDK exports `handle-packed-batch`: many 1 KiB orders in one call, packed into one
/// buffer whose slices the handler gets, each finished as it is handled, the guest's garbage collector running between them (every few MiB), and the batch
/// stopping after an order that is redelivered.
#[test]
fn go_handles_batches_of_1_kib_orders() {
    use crate::batch::{batch, labels};
    use ackbar::plugin::{InstancePool, PluginLimits};
    let plugin = crate::support::runtime()
        .load(&example("go", "orders"), PluginLimits::default())
        .unwrap();
    let pool = InstancePool::new(std::sync::Arc::new(plugin));
    assert!(pool.batches() && pool.packs());
    let orders: Vec<String> = (0..64)
        .map(|i| {
            format!(
                r#"{{"id":"o{i}","item":"book","quantity":2,"note":"{}"}}"#,
                "x".repeat(1000)
            )
        })
        .collect();
    let payloads: Vec<&str> = orders.iter().map(String::as_str).collect();
    for round in 0..80 {
        let got = batch(&pool, &payloads, AckPolicy::Ack);
        assert_eq!(labels(&got), vec!["ok"; 64], "round {round}");
    }
    let got = batch(
        &pool,
        &[payloads[0], ORDERS[3], payloads[1]],
        AckPolicy::NackOnError,
    );
    assert_eq!(labels(&got), ["ok", "error"]);
    assert_eq!(pool.instances_created(), 1, "no instance was replaced");
}

macro_rules! every_policy {
    ($language:literal, $handler:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn manual() {
            check($language, Handler::$handler, AckPolicy::Manual).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ack_first() {
            check($language, Handler::$handler, AckPolicy::AckFirst).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ack() {
            check($language, Handler::$handler, AckPolicy::Ack).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reject_on_error() {
            check($language, Handler::$handler, AckPolicy::RejectOnError).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn nack_on_error() {
            check($language, Handler::$handler, AckPolicy::NackOnError).await;
        }
    };
}

macro_rules! language {
    ($module:ident, $language:literal) => {
        mod $module {
            use super::*;
            mod orders {
                use super::*;
                every_policy!($language, Orders);
            }
            mod manual {
                use super::*;
                every_policy!($language, Manual);
            }
            /// Enough messages for the guest's allocator and garbage collector to run many
            /// times, each copied in through the guest's `cabi_realloc`.
            #[test]
            fn thousands_of_1_kib_orders_without_a_trap() {
                use ackbar::plugin::{InstancePool, PluginLimits};
                let plugin = crate::support::runtime()
                    .load(&example($language, "orders"), PluginLimits::default())
                    .unwrap();
                let pool = InstancePool::new(std::sync::Arc::new(plugin));
                for i in 0..5000 {
                    let payload = format!(
                        r#"{{"id":"o{i}","item":"book","quantity":2,"note":"{}"}}"#,
                        "x".repeat(1000)
                    );
                    let message = ackbar::bindings::Message {
                        topic: "orders".into(),
                        partition: 0,
                        offset: i,
                        timestamp: None,
                        key: None,
                        payload: Some(payload.into_bytes()),
                        headers: Vec::new(),
                        attempt: 1,
                    };
                    let outcome =
                        ackbar::plugin::block_on(pool.call(&message, &Default::default()));
                    assert_eq!(outcome.label(), "ok", "message {i}: {outcome:?}");
                }
                assert_eq!(pool.instances_created(), 1, "no instance was replaced");
            }

            /// The enrich example: a valid order is forwarded, keyed by its id and with its
            /// size, to `<topic>.enriched`; a malformed one is rejected and forwards nothing; a
            /// pipeline without that output gets a fatal error, not a trap.
            #[test]
            fn enrich_forwards_valid_orders_and_rejects_malformed_ones() {
                use ackbar::outcome::{CallEnd, Decision, ErrorKind};
                use ackbar::plugin::{CallContext, InstancePool, PluginLimits};
                let plugin = crate::support::runtime()
                    .load(&example($language, "enrich"), PluginLimits::default())
                    .unwrap();
                let pool = InstancePool::new(std::sync::Arc::new(plugin));
                let call = |payload: &str, outputs: &[&str]| {
                    let context = CallContext {
                        outputs: std::sync::Arc::new(ackbar::outputs::OutputRules {
                            topics: outputs.iter().map(|t| t.to_string()).collect(),
                            ..Default::default()
                        }),
                        ..CallContext::default()
                    };
                    let message = crate::support::message_on("orders", payload.as_bytes());
                    ackbar::plugin::block_on(pool.call_with_outputs(&message, &context.into()))
                };
                let (outcome, sent) = call(
                    r#"{"id":"o1","item":"bücher","quantity":12,"warehouse":"north"}"#,
                    &["orders.enriched"],
                );
                assert_eq!(outcome.label(), "ok", "{outcome:?}");
                assert_eq!(sent.records.len(), 1, "{sent:?}");
                let record = &sent.records[0];
                assert_eq!(record.topic, "orders.enriched");
                assert_eq!(record.key.as_deref(), Some(&b"o1"[..]));
                let enriched: serde_json::Value =
                    serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
                assert_eq!(
                    enriched,
                    serde_json::json!({"id": "o1", "item": "bücher", "quantity": 12, "warehouse": "north", "size": "bulk"})
                );
                let (small, sent) = call(r#"{"id":"o2","item":"pen","quantity":1}"#, &["orders.*"]);
                assert_eq!(small.label(), "ok");
                assert!(String::from_utf8_lossy(sent.records[0].payload.as_deref().unwrap())
                    .contains(r#""size":"standard""#));
                for malformed in ["not json", r#"{"id":"o3","item":"pen","quantity":0}"#] {
                    let (outcome, sent) = call(malformed, &["orders.enriched"]);
                    assert_eq!(outcome.end, CallEnd::Returned(Some(Decision::Reject)), "{malformed}");
                    assert!(sent.records.is_empty(), "{malformed}: {sent:?}");
                }
                let (refused, sent) = call(r#"{"id":"o1","item":"book","quantity":2}"#, &[]);
                assert!(
                    matches!(&refused.end, CallEnd::Failed { kind: ErrorKind::Fatal, message } if message.contains("not among this pipeline's outputs")),
                    "{refused:?}"
                );
                assert_eq!((sent.records.len(), sent.refused.undeclared_topic), (0, 1));
            }

            #[test]
            fn check_accepts_both_handlers() {
                for name in ["orders", "manual"] {
                    let report = ackbar::plugin::inspect(
                        &crate::support::runtime(),
                        &example($language, name),
                    )
                    .unwrap_or_else(|e| panic!("{}/{name}: {e:#}", $language));
                    assert!(report.exports.iter().any(|e| e == "handle"), "{report:?}");
                    assert!(
                        report
                            .imports
                            .iter()
                            .any(|i| i.starts_with("ackbar:plugin/log@")),
                        "{report:?}"
                    );
                }
            }
        }
    };
}

language!(rust, "rust");
language!(go, "go");
language!(js, "js");
language!(python, "python");
