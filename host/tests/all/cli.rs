//! The `ackbar` binary, as a user runs it.

use crate::support::{guest, repo_root};
use std::process::{Command, Output};

fn ackbar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(args)
        .env("ACKBAR_LOG", "error")
        .output()
        .expect("run ackbar")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_example_and_lists_imports() {
    let out = ackbar(&["check", guest("orders").to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("implements world handler of ackbar:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("ackbar:plugin/log@0.1.0"), "{stdout}");
}

#[test]
fn check_fails_with_a_one_line_error_for_a_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let out = ackbar(&["check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: plugin {}: is a core WebAssembly module",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn run_rejects_a_config_without_group_for_ack() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        format!(
            "[[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\nack_policy = \"ack\"\nplugin = \"{}\"\n",
            guest("orders").display()
        ),
    )
    .unwrap();
    let out = ackbar(&["run", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "error: {}: pipeline 'orders': field `group_id` is required by ack_policy ACK (offsets are committed to the consumer group)",
            config.display()
        )
    );
}

#[test]
fn run_reports_a_toml_syntax_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(&config, "[[pipeline]]\nname = \"x\"\ntopics = [\"a\"\n").unwrap();
    let out = ackbar(&["run", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: TOML parse error at line 3", config.display())),
        "{stderr}"
    );
}

#[test]
fn demo_runs_end_to_end_and_reports_committed_offsets() {
    let out = Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(["demo", "--plugin", guest("orders").to_str().unwrap()])
        .current_dir(repo_root())
        .output()
        .expect("run demo");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("TRAPPED (panic): order o10: cannot price item 'poison'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("attempt 3  handled -> acked"),
        "the offline warehouse recovers: {stdout}"
    );
    assert!(
        stdout.contains("orders/0: committed 5 of 6  (stalled at offset 5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("orders/1: committed 6 of 6  (all handled)"),
        "{stdout}"
    );
    assert!(stdout.contains("summary: 12 messages"), "{stdout}");
}

#[test]
fn every_command_has_help() {
    for cmd in ["run", "demo", "check", "produce"] {
        let out = ackbar(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        assert!(text(&out.stdout).contains("Usage: ackbar"), "{cmd}");
    }
}

#[test]
fn run_handles_messages_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = \"embedded\"\n[run]\nsummary_interval_secs = 1\n[embedded]\npartitions = 1\n\
             [kafka]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n\
             [[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\n\
             ack_policy = \"ACK\"\nplugin = \"{}\"\n",
            guest("orders").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(["run", config.to_str().unwrap()])
        .env("ACKBAR_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ackbar run");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; log:\n{}", log.join("\n")),
            }
        }
    };
    let line = wait_for("embedded broker listening on ");
    let address = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address")
        .to_string();
    let produce = ackbar(&[
        "produce",
        "--brokers",
        &address,
        "--topic",
        "orders",
        r#"{"id":"a","item":"pen","quantity":1}"#,
        "not an order",
        r#"{"id":"b","item":"ink","quantity":3}"#,
    ]);
    assert!(produce.status.success(), "{}", text(&produce.stderr));
    wait_for("total 3 messages: 3 ok, 0 errors, 0 traps, 0 interrupts; 2 acks, 0 nacks, 1 rejects");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("pipeline stopped");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ackbar did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
