//! The brokers tests run against: the embedded mock cluster (in-process), and real broker
//! processes — Apache Kafka 4.4 (KRaft) and tansu — started once per test run by
//! `scripts/broker.sh`, which stops them when this process exits, however it exits.

use crate::support::repo_root;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
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

/// A broker process shared by every test of this run.
pub struct ExternalBroker {
    pub bootstrap: String,
    _process: Child,
    _data: tempfile::TempDir,
}

/// A port pair (PORT, PORT+1: the controller) that is free now, below the kernel's ephemeral
/// range so that the many clients and embedded brokers of a test run, which bind ephemeral
/// ports, do not take it while the broker starts.
fn free_port(attempt: u32) -> u16 {
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(attempt * 104_729);
    (0..1000u32)
        .map(|i| 20_000 + ((seed.wrapping_add(i * 2)) % 10_000) as u16)
        .find(|&port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        })
        .expect("a free port pair between 20000 and 30000")
}

/// Starts a broker, trying other ports if one was taken meanwhile.
fn start(kind: &str) -> ExternalBroker {
    let mut last_error = String::new();
    for attempt in 0..3 {
        match try_start(kind, free_port(attempt)) {
            Ok(broker) => return broker,
            Err(e) => last_error = e,
        }
    }
    panic!("{last_error}")
}

fn try_start(kind: &str, port: u16) -> Result<ExternalBroker, String> {
    let data = tempfile::Builder::new()
        .prefix(&format!("ackbar-{kind}-"))
        .tempdir()
        .unwrap();
    let mut process = Command::new("bash")
        .arg(repo_root().join("scripts/broker.sh"))
        .args([
            kind,
            &port.to_string(),
            data.path().to_str().unwrap(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run scripts/broker.sh {kind}: {e}"));
    let mut lines = BufReader::new(process.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let ready = lines.by_ref().find(|l| l.starts_with("ready "));
    // Keep draining the script's output so it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let Some(ready) = ready else {
        // broker.sh exits by itself when its broker fails to start.
        let _ = process.wait();
        let log = std::fs::read_to_string(data.path().join("broker.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        // Kept for inspection: the data dir is not deleted when the broker failed.
        let kept = data.keep();
        return Err(format!(
            "the {kind} broker did not start on port {port} (logs in {}); last lines:\n{}",
            kept.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    };
    Ok(ExternalBroker {
        bootstrap: ready.trim_start_matches("ready ").trim().to_string(),
        _process: process,
        _data: data,
    })
}

/// The shared broker of `kind`, started on first use. Embedded brokers are per test instead.
pub fn external(kind: BrokerKind) -> &'static ExternalBroker {
    static KAFKA: OnceLock<ExternalBroker> = OnceLock::new();
    static TANSU: OnceLock<ExternalBroker> = OnceLock::new();
    match kind {
        BrokerKind::Kafka | BrokerKind::KafkaConsumerProtocol => {
            KAFKA.get_or_init(|| start("kafka"))
        }
        BrokerKind::Tansu => TANSU.get_or_init(|| start("tansu")),
        BrokerKind::Embedded => unreachable!("the embedded broker is started per test"),
    }
}
