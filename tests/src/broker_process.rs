//! Real broker processes — Apache Kafka 4.4 (KRaft) and tansu — run by `scripts/broker.sh`, which
//! stops them when the process that started them exits, however it exits. Used by the
//! integration tests and the end-to-end benchmark.

use anyhow::{anyhow, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running broker process.
pub struct BrokerProcess {
    pub bootstrap: String,
    _process: Child,
    _data: tempfile::TempDir,
}

/// A port pair (PORT, PORT+1: the controller) that is free now.
fn free_port(attempt: u32) -> Result<u16> {
    free_ports(attempt, 2)
}

/// `count` consecutive ports from PORT that are free now, below the kernel's ephemeral range so
/// that the many clients and embedded brokers of a test run, which bind ephemeral ports, do not
/// take them while the server that gets them starts.
pub(crate) fn free_ports(attempt: u32, count: u16) -> Result<u16> {
    // Each call of the process starts elsewhere: servers started at the same moment would
    // otherwise all find the same ports free, and one would lose them.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(attempt * 104_729)
        .wrapping_add(call.wrapping_mul(2_654_435_761));
    (0..1000u32)
        .map(|i| 20_000 + ((seed.wrapping_add(i * 2)) % 10_000) as u16)
        .find(|&port| (0..count).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok()))
        .ok_or_else(|| anyhow!("no {count} free ports in a row between 20000 and 30000"))
}

impl BrokerProcess {
    /// Starts `kind` (`kafka` or `tansu`) with `repo_root/scripts/broker.sh`, trying other
    /// ports if one was taken meanwhile.
    pub fn start(repo_root: &Path, kind: &str) -> Result<Self> {
        let mut last_error = anyhow!("not started");
        for attempt in 0..3 {
            match Self::try_start(repo_root, kind, free_port(attempt)?) {
                Ok(broker) => return Ok(broker),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn try_start(repo_root: &Path, kind: &str, port: u16) -> Result<Self> {
        let data = tempfile::Builder::new()
            .prefix(&format!("ackbar-{kind}-"))
            .tempdir()?;
        let mut process = Command::new("bash")
            .arg(repo_root.join("scripts/broker.sh"))
            .args([kind, &port.to_string()])
            .arg(data.path())
            .arg(std::process::id().to_string())
            // A broker kept in a static outlives every drop: the script deletes the data.
            .env("BROKER_REMOVE_DATA", "1")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run scripts/broker.sh {kind}"))?;
        let mut lines = BufReader::new(process.stdout.take().expect("piped stdout"))
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
            return Err(anyhow!(
                "the {kind} broker did not start on port {port} (logs in {}); last lines:\n{}",
                kept.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        };
        Ok(BrokerProcess {
            bootstrap: ready.trim_start_matches("ready ").trim().to_string(),
            _process: process,
            _data: data,
        })
    }
}
