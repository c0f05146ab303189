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
