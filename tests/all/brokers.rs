//! The brokers tests run against: the embedded mock cluster (in-process), and real broker
//! processes — Apache Kafka 4.4 (KRaft) and tansu — started once per test run by
//! `scripts/broker.sh`, which stops them when this process exits, however it exits.

use crate::support::repo_root;
use ackbar_tests::broker_process::BrokerProcess;
use std::sync::OnceLock;

/// Which broker a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    /// Apache Kafka with the classic consumer-group protocol.
    Kafka,
    /// Apache Kafka with the KIP-848 consumer-group protocol (`group.protocol=consumer`).
    KafkaConsumerProtocol,
    Tansu,
}

impl BrokerKind {
    /// The `[kafka]` lines a test's config file gives a pipeline's group on this broker: short
    /// sessions for the classic protocol (the consumer protocol's are the broker's).
    pub fn kafka_toml(self) -> &'static str {
        match self {
            BrokerKind::KafkaConsumerProtocol => "",
            _ => "\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n",
        }
    }

    /// The `[[pipeline]]` line that chooses this broker's group protocol.
    pub fn pipeline_toml(self) -> &'static str {
        match self {
            BrokerKind::KafkaConsumerProtocol => "group_protocol = \"consumer\"\n",
            _ => "",
        }
    }
}

/// The shared broker of `kind`, started on first use. Embedded brokers are per test instead.
pub fn external(kind: BrokerKind) -> &'static BrokerProcess {
    static KAFKA: OnceLock<BrokerProcess> = OnceLock::new();
    static TANSU: OnceLock<BrokerProcess> = OnceLock::new();
    match kind {
        BrokerKind::Kafka | BrokerKind::KafkaConsumerProtocol => {
            KAFKA.get_or_init(|| start("kafka"))
        }
        BrokerKind::Tansu => TANSU.get_or_init(|| start("tansu")),
        BrokerKind::Embedded => unreachable!("the embedded broker is started per test"),
    }
}

/// The shared Apache Kafka with SASL/PLAIN and the standard authorizer (`scripts/broker.sh
/// kafka-sasl`): users `admin` (super user), `shop` and `analytics`, password `<user>-secret`.
pub fn sasl_kafka() -> &'static BrokerProcess {
    static KAFKA_SASL: OnceLock<BrokerProcess> = OnceLock::new();
    KAFKA_SASL.get_or_init(|| start("kafka-sasl"))
}

fn start(kind: &str) -> BrokerProcess {
    BrokerProcess::start(&repo_root(), kind).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Each test (`name => |broker| future`) on Apache Kafka with each group protocol: a module per
/// test with `classic` and `kip_848` in it, so the two share every line but the broker.
macro_rules! on_both_protocols {
    ($($name:ident => $body:expr;)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn classic() {
                ($body)(BrokerKind::Kafka).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kip_848() {
                ($body)(BrokerKind::KafkaConsumerProtocol).await;
            }
        }
    )*};
}

pub(crate) use on_both_protocols;
