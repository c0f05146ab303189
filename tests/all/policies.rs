//! Every ack policy × every handler outcome, on every broker (embedded, Apache Kafka with both
//! group protocols, tansu): how often the message is delivered and which offset the group has
//! committed, read back from the broker. The expected values are the table in the README's "Ack
//! policies" section, written out cell by cell.

use crate::brokers::BrokerKind;
use crate::support::Cluster;
use ackbar::policy::AckPolicy;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Delivered exactly once; then the group's committed offset.
    Once(Option<i64>),
    /// Delivered again and again (attempt 1, 2, ...); then the committed offset.
    Redelivered(Option<i64>),
}
use Expect::*;

async fn check(broker: BrokerKind, policy: AckPolicy, payload: &str, label: &str, expect: Expect) {
    let cluster = Cluster::on(broker, 1).await;
    cluster.produce(&[(0, payload)]).await;
    let mut run = cluster.start(cluster.config(policy));
    let committed = match expect {
        Once(committed) => {
            run.until(Duration::from_secs(120), |seen| !seen.is_empty())
                .await;
            run.settle(Duration::from_millis(500)).await;
            run.stop().await;
            assert_eq!(
                run.deliveries(0, 0).len(),
                1,
                "{policy} {payload}: {:?}",
                run.summary()
            );
            committed
        }
        Redelivered(committed) => {
            run.until(Duration::from_secs(120), |seen| seen.len() >= 3)
                .await;
            run.stop().await;
            let attempts: Vec<u32> = run.deliveries(0, 0).iter().map(|r| r.attempt).collect();
            assert_eq!(
                &attempts[..3],
                &[1, 2, 3],
                "{policy} {payload}: {:?}",
                run.summary()
            );
            committed
        }
    };
    let first = run.deliveries(0, 0)[0];
    assert_eq!(first.outcome.label(), label, "{policy} {payload}");
    assert_eq!(
        cluster.committed(),
        vec![committed],
        "{policy} {payload}: committed offset"
    );
}

/// One test per broker for a cell of the table.
macro_rules! on_every_broker {
    ($policy:ident, $payload:literal, $label:literal, $expect:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn embedded() {
            check(
                BrokerKind::Embedded,
                AckPolicy::$policy,
                $payload,
                $label,
                $expect,
            )
            .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn kafka() {
            check(
                BrokerKind::Kafka,
                AckPolicy::$policy,
                $payload,
                $label,
                $expect,
            )
            .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn kafka_consumer_protocol() {
            check(
                BrokerKind::KafkaConsumerProtocol,
                AckPolicy::$policy,
                $payload,
                $label,
                $expect,
            )
            .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn tansu() {
            check(
                BrokerKind::Tansu,
                AckPolicy::$policy,
                $payload,
                $label,
                $expect,
            )
            .await;
        }
    };
}

macro_rules! row {
    ($module:ident, $policy:ident, [$($outcome:ident: $payload:literal => $label:literal, $expect:expr;)*]) => {
        mod $module {
            use super::*;
            $(
                mod $outcome {
                    use super::*;
                    on_every_broker!($policy, $payload, $label, $expect);
                }
            )*
        }
    };
}

row!(manual, Manual, [
    success: "ok" => "ok", Once(None);
    returned_error: "error" => "error", Once(None);
    trap: "trap" => "trap:panic", Once(None);
    explicit_ack: "ack" => "ack+ok", Once(Some(1));
    explicit_nack: "nack" => "nack+ok", Redelivered(None);
    interrupt_ack: "interrupt-ack" => "interrupt:ack", Once(Some(1));
    interrupt_nack: "interrupt-nack" => "interrupt:nack", Redelivered(None);
]);

row!(ack_first, AckFirst, [
    success: "ok" => "ok", Once(Some(1));
    returned_error: "error" => "error", Once(Some(1));
    trap: "trap" => "trap:panic", Once(Some(1));
    explicit_ack: "ack" => "ack+ok", Once(Some(1));
    explicit_nack: "nack" => "nack+ok", Redelivered(Some(1));
    interrupt_ack: "interrupt-ack" => "interrupt:ack", Once(Some(1));
    interrupt_nack: "interrupt-nack" => "interrupt:nack", Redelivered(Some(1));
]);

row!(ack, Ack, [
    success: "ok" => "ok", Once(Some(1));
    returned_error: "error" => "error", Once(Some(1));
    trap: "trap" => "trap:panic", Once(Some(1));
    explicit_ack: "ack" => "ack+ok", Once(Some(1));
    explicit_nack: "nack" => "nack+ok", Redelivered(None);
    interrupt_ack: "interrupt-ack" => "interrupt:ack", Once(Some(1));
    interrupt_nack: "interrupt-nack" => "interrupt:nack", Redelivered(None);
]);

row!(reject_on_error, RejectOnError, [
    success: "ok" => "ok", Once(Some(1));
    returned_error: "error" => "error", Once(Some(1));
    trap: "trap" => "trap:panic", Once(Some(1));
    explicit_ack: "ack" => "ack+ok", Once(Some(1));
    explicit_nack: "nack" => "nack+ok", Redelivered(None);
    interrupt_ack: "interrupt-ack" => "interrupt:ack", Once(Some(1));
    interrupt_nack: "interrupt-nack" => "interrupt:nack", Redelivered(None);
]);

row!(nack_on_error, NackOnError, [
    success: "ok" => "ok", Once(Some(1));
    returned_error: "error" => "error", Redelivered(None);
    trap: "trap" => "trap:panic", Redelivered(None);
    explicit_ack: "ack" => "ack+ok", Once(Some(1));
    explicit_nack: "nack" => "nack+ok", Redelivered(None);
    interrupt_ack: "interrupt-ack" => "interrupt:ack", Once(Some(1));
    interrupt_nack: "interrupt-nack" => "interrupt:nack", Redelivered(None);
]);
