//! The `ackbar` binary, as a user runs it.

use crate::brokers::BrokerKind;
use crate::support::{ackbar, guest, http_get, repo_root, text, Cluster, RunningAckbar};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// `ackbar run` on a config file holding `toml`; returns the file's path and the run's output.
fn run_config(toml: &str) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ackbar.toml");
    std::fs::write(&config, toml).unwrap();
    let out = ackbar(&["run", config.to_str().unwrap()]);
    (dir, config, out)
}

#[test]
fn run_rejects_a_config_without_group_for_ack() {
    let (_dir, config, out) = run_config(&format!(
        "[[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\nack_policy = \"ack\"\nplugin = \"{}\"\n",
        guest("orders").display()
    ));
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
    let (_dir, config, out) = run_config("[[pipeline]]\nname = \"x\"\ntopics = [\"a\"\n");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: TOML parse error at line 3", config.display())),
        "{stderr}"
    );
}

#[test]
fn demo_runs_end_to_end_and_reports_committed_offsets() {
    let out = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["demo", "--plugin", guest("orders").to_str().unwrap()])
        .current_dir(repo_root())
        .output()
        .expect("run demo");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("trap (panic): order o10: cannot price item 'poison'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("attempt 3  handled -> commit"),
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
fn invoke_redelivers_nacked_messages_and_prints_each_delivery() {
    let orders = guest("orders");
    let out = ackbar(&[
        "invoke",
        orders.to_str().unwrap(),
        "--policy",
        "NACK_ON_ERROR",
        "-m",
        r#"{"id":"o1","item":"book","quantity":2}"#,
        "-m",
        "not json",
        "-m",
        r#"{"id":"o2","item":"pen","quantity":1,"warehouse":"offline"}"#,
        "-m",
        r#"{"id":"o3","item":"poison","quantity":1}"#,
        "--max-attempts",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines[0], "message 0 attempt 1: ok -> commit");
    assert_eq!(lines[1], "message 1 attempt 1: returned:reject -> reject");
    assert_eq!(
        lines[2],
        "message 2 attempt 1: error -> redeliver (warehouse offline (attempt 1))"
    );
    assert_eq!(
        lines[3],
        "message 2 attempt 2: error -> redeliver, pause (max_attempts used up) (warehouse offline (attempt 2))"
    );
    assert!(
        lines[4].starts_with("message 3 attempt 1: trap:panic -> redeliver (trap (panic): ")
            && lines[4].contains("cannot price item 'poison'"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].starts_with(
            "message 3 attempt 2: trap:panic -> redeliver, pause (max_attempts used up)"
        ),
        "{}",
        lines[5]
    );
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn invoke_shows_what_each_delivery_sends_and_whether_it_is_published() {
    let enrich = guest("enrich");
    let fixture = guest("fixture");
    let out = ackbar(&[
        "invoke",
        enrich.to_str().unwrap(),
        "--output",
        "invoke.*",
        "-m",
        r#"{"id":"o1","item":"book","quantity":12}"#,
        "-m",
        "not json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "message 0 attempt 1: ok -> commit",
            r#"  publishes to invoke.enriched key=o1: {"id":"o1","item":"book","quantity":12,"size":"bulk"}"#,
            "message 1 attempt 1: returned:reject -> reject",
        ]
    );
    let out = ackbar(&[
        "invoke",
        fixture.to_str().unwrap(),
        "--policy",
        "NACK_ON_ERROR",
        "--max-attempts",
        "1",
        "--output",
        "out",
        "-m",
        "send:out/error",
        "-m",
        "send:elsewhere/ok",
        "--output-json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deliveries: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(deliveries[0]["sent"][0]["topic"], "out");
    assert_eq!(deliveries[0]["sent"][0]["payload"], "0/0/1");
    assert_eq!(
        deliveries[0]["published"], false,
        "an error publishes nothing"
    );
    assert_eq!(deliveries[1]["refused_sends"], 1);
    assert!(deliveries[1].get("sent").is_none(), "{}", deliveries[1]);
}

#[test]
fn invoke_reads_json_lines_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("messages.jsonl");
    std::fs::write(
        &input,
        "{\"payload\": \"ack\", \"key\": \"k\", \"headers\": {\"h\": \"v\"}, \"offset\": 41}\n\n{\"payload\": \"interrupt-reject\"}\n",
    )
    .unwrap();
    let fixture = guest("fixture");
    let out = ackbar(&[
        "invoke",
        fixture.to_str().unwrap(),
        "--json",
        "--output-json",
        "--policy",
        "MANUAL",
        "--file",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deliveries: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["outcome"], "ack+ok");
    assert_eq!(deliveries[0]["action"], "commit");
    assert_eq!(deliveries[0]["verdict"], "commit");
    assert_eq!(deliveries[1]["outcome"], "interrupt:reject");
    assert_eq!(deliveries[1]["action"], "reject");
    // No dead-letter topic: a rejected message is settled by its commit.
    assert_eq!(deliveries[1]["verdict"], "commit");

    std::fs::write(&input, "{\"payload\": \"ok\"}\n{\"payload\": 5}\n").unwrap();
    let out = ackbar(&[
        "invoke",
        fixture.to_str().unwrap(),
        "--json",
        "--file",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}: line 2:", input.display())),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is called before the input is read whole"
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "run", "demo", "check", "invoke", "produce", "deploy", "rollback", "undeploy", "status",
    ] {
        let out = ackbar(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        assert!(text(&out.stdout).contains("Usage: ackbar"), "{cmd}");
    }
}

fn embedded_config(plugin: &std::path::Path, extra: &str) -> String {
    format!(
        "brokers = \"embedded\"\n[run]\nsummary_interval_secs = 1\n[embedded]\npartitions = 1\n\
         [kafka]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n\
         [[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\n\
         ack_policy = \"ACK\"\nplugin = \"{}\"\n{extra}",
        plugin.display()
    )
}

#[test]
fn run_handles_messages_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut ackbar_run = RunningAckbar::start(&embedded_config(&guest("orders"), ""), dir.path());
    let address = ackbar_run.broker_address();
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
    ackbar_run.wait_for(
        "total 3 messages: 3 ok, 0 errors, 0 traps, 0 interrupts; actions: 2 commit, 0 redeliver, 1 reject, 0 nothing",
    );
    ackbar_run.signal("TERM");
    ackbar_run.wait_for("pipeline stopped");
    let status = ackbar_run.wait_exit();
    assert!(status.success(), "exit status {status}");
}

/// A guest blocked in a host call for a minute does not hold up SIGTERM: `ackbar run` drains for
/// `drain_timeout_ms`, commits what settled (the two messages before it), and exits; the blocked
/// message stays uncommitted for the next owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_guest_is_blocked_commits_what_settled_and_exits() {
    let cluster = Cluster::on(BrokerKind::Kafka, 1).await;
    cluster
        .produce(&[(0, "ok"), (0, "ok"), (0, "sleep:60000"), (0, "ok")])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "brokers = \"{}\"\n[run]\nsummary_interval_secs = 1\n\
         [[pipeline]]\nname = \"blocked\"\ntopics = [\"{}\"]\ngroup_id = \"{}\"\n\
         ack_policy = \"ACK\"\nplugin = \"{}\"\ncommit_interval_ms = 100\n\
         drain_timeout_ms = 1000\nwatch_plugin = false\n\
         [pipeline.limits]\ndeadline_ms = 120000\n",
        cluster.bootstrap,
        cluster.topic,
        cluster.group,
        guest("fixture").display()
    );
    let mut ackbar_run = RunningAckbar::start(&config, dir.path());
    ackbar_run.wait_for("total 2 messages: 2 ok");
    ackbar_run.signal("TERM");
    // Far less than the guest's sleep: the process did not wait for the blocked call.
    let status = tokio::task::block_in_place(|| ackbar_run.wait_exit());
    assert!(status.success(), "exit status {status}");
    ackbar_run.seen_or_wait("did not finish within the drain timeout");
    assert_eq!(cluster.committed(), vec![Some(2)]);
}

#[test]
fn sighup_reloads_a_plugin_that_is_not_watched() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("handler.wasm");
    let original = std::fs::read(guest("fixture")).unwrap();
    std::fs::write(&plugin, ackbar_tests::wasm::tag_component(&original, 1)).unwrap();
    let mut ackbar_run = RunningAckbar::start(
        &embedded_config(&plugin, "watch_plugin = false\n"),
        dir.path(),
    );
    ackbar_run.wait_for("starting pipeline");
    let old = ackbar::plugin::version_id(&ackbar_tests::wasm::tag_component(&original, 1));
    let new = ackbar::plugin::version_id(&ackbar_tests::wasm::tag_component(&original, 2));
    std::fs::write(&plugin, ackbar_tests::wasm::tag_component(&original, 2)).unwrap();
    ackbar_run.signal("HUP");
    let line = ackbar_run.wait_for("reloaded pipeline orders");
    assert!(line.contains(&format!("{old} → {new} in ")), "{line}");
    ackbar_run.signal("TERM");
    assert!(ackbar_run.wait_exit().success());
}

#[test]
fn sighup_follows_a_plugin_path_changed_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(guest("fixture")).unwrap();
    let (first, second) = (dir.path().join("v1.wasm"), dir.path().join("v2.wasm"));
    std::fs::write(&first, ackbar_tests::wasm::tag_component(&original, 1)).unwrap();
    std::fs::write(&second, ackbar_tests::wasm::tag_component(&original, 2)).unwrap();
    let mut ackbar_run = RunningAckbar::start(&embedded_config(&first, ""), dir.path());
    ackbar_run.wait_for("starting pipeline");
    std::fs::write(dir.path().join("ackbar.toml"), embedded_config(&second, "")).unwrap();
    ackbar_run.signal("HUP");
    let line = ackbar_run.wait_for("reloaded pipeline orders");
    let old = ackbar::plugin::version_id(&ackbar_tests::wasm::tag_component(&original, 1));
    let new = ackbar::plugin::version_id(&ackbar_tests::wasm::tag_component(&original, 2));
    assert!(line.contains(&format!("{old} → {new} in ")), "{line}");
    // The watcher now follows the new file.
    std::fs::write(&second, ackbar_tests::wasm::tag_component(&original, 3)).unwrap();
    let newest = ackbar::plugin::version_id(&ackbar_tests::wasm::tag_component(&original, 3));
    let line = ackbar_run.wait_for("reloaded pipeline orders");
    assert!(line.contains(&format!("{new} → {newest} in ")), "{line}");
    ackbar_run.signal("TERM");
    assert!(ackbar_run.wait_exit().success());
}

/// The value of one series in Prometheus text, e.g. `ackbar_messages_total{...outcome="ok"}`.
pub(crate) fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until `/readyz` at `addr` answers 200 (the pipelines have their assignment).
fn until_ready(addr: &str) {
    poll("/readyz to be ready after the assignment", || {
        (http_get(addr, "/readyz").0 == 200).then_some(())
    });
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn metrics_health_and_readiness_over_http_during_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(&guest("fixture"), "tenant = \"shop\"\n")
        .replace("ack_policy = \"ACK\"", "ack_policy = \"NACK_ON_ERROR\"")
        .replace(
            "[run]\n",
            "[run]\nmetrics_addr = \"127.0.0.1:0\"\nready_stall_threshold_ms = 500\n",
        );
    let mut running = RunningAckbar::start(&config, dir.path());
    let brokers = running.broker_address();
    let addr = running.ops_address();
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    until_ready(&addr);

    let produce = |payloads: &[&str]| {
        let mut args = vec!["produce", "--brokers", &brokers, "--topic", "orders"];
        args.extend_from_slice(payloads);
        assert!(ackbar(&args).status.success());
    };
    produce(&["ok", "ok", "ok", "trap"]);
    let labels = [
        ("tenant", "shop"),
        ("pipeline", "orders"),
        ("topic", "orders"),
    ];
    let ok = |m: &str| {
        series(
            m,
            "ackbar_messages_total",
            &[labels[0], labels[1], labels[2], ("outcome", "ok")],
        )
    };
    let trap_panics =
        |m: &str| series(m, "ackbar_traps_total", &[labels[1], ("kind", "panic")]).unwrap_or(0.0);
    // The trap comes after the three ok messages and may be recorded later.
    let metrics = poll("3 ok messages and a trap in /metrics", || {
        let (_, body) = http_get(&addr, "/metrics");
        (ok(&body) == Some(3.0) && trap_panics(&body) >= 1.0).then_some(body)
    });
    assert!(
        metrics.contains("ackbar_handler_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert_eq!(
        series(
            &metrics,
            "ackbar_actions_total",
            &[labels[1], ("action", "commit")]
        ),
        Some(3.0)
    );

    // The trap is redelivered again and again: after the threshold the pipeline is not ready.
    let body = poll("/readyz to report the stuck partition", || {
        let (status, body) = http_get(&addr, "/readyz");
        (status == 503).then_some(body)
    });
    assert!(
        body.contains("pipeline orders: partition orders/0 stuck at offset 3"),
        "{body}"
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200, "alive while not ready");
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(
        series(&metrics, "ackbar_redeliveries_total", &[labels[1]]).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    running.signal("TERM");
    assert!(running.wait_exit().success());
}

#[test]
fn batch_calls_show_in_the_metrics_and_the_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(&guest("fixture"), "tenant = \"shop\"\n")
        .replace("[run]\n", "[run]\nmetrics_addr = \"127.0.0.1:0\"\n");
    let mut running = RunningAckbar::start(&config, dir.path());
    let brokers = running.broker_address();
    let addr = running.ops_address();
    until_ready(&addr);
    // While the first message sleeps, the rest wait in the partition's queue: however they
    // arrive, some of them are taken together by one handle-batch call.
    let mut args = vec![
        "produce",
        "--brokers",
        &brokers,
        "--topic",
        "orders",
        "sleep:500",
    ];
    args.extend(["ok"; 10]);
    assert!(ackbar(&args).status.success());
    let labels = [
        ("tenant", "shop"),
        ("pipeline", "orders"),
        ("topic", "orders"),
    ];
    let metrics = poll("11 ok messages in /metrics", || {
        let (_, body) = http_get(&addr, "/metrics");
        let ok = series(
            &body,
            "ackbar_messages_total",
            &[labels[1], ("outcome", "ok")],
        );
        (ok == Some(11.0)).then_some(body)
    });
    let calls = series(&metrics, "ackbar_batch_calls_total", &labels).expect("batch calls");
    let batched = series(&metrics, "ackbar_batched_messages_total", &labels).expect("batched");
    assert!(calls >= 1.0, "{metrics}");
    assert!(
        batched >= 2.0 * calls && batched <= 11.0,
        "each batch call takes 2 or more of the 11 messages: {batched} in {calls}"
    );
    running.wait_for(&format!("{batched} messages in {calls} batch calls"));
    running.signal("TERM");
    assert!(running.wait_exit().success());
}

#[test]
fn json_logs_put_guest_lines_in_the_message_span_with_the_producer_trace() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(&guest("fixture"), "tenant = \"shop\"\n");
    let mut ackbar = RunningAckbar::start_with(&config, dir.path(), &["--log-format", "json"]);
    let brokers = ackbar.broker_address();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let record = ackbar::kafka::Record {
        partition: Some(0),
        key: None,
        payload: b"log:hello from the guest".to_vec(),
        headers: vec![("traceparent".into(), traceparent.as_bytes().to_vec())],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(ackbar::kafka::produce(&brokers, "orders", &[record]))
        .unwrap();
    let line = ackbar.wait_for("hello from the guest");
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let span = &event["span"];
    assert_eq!(span["name"], "message", "{line}");
    assert_eq!(span["tenant"], "shop");
    assert_eq!(span["pipeline"], "orders");
    assert_eq!(span["topic"], "orders");
    assert_eq!(span["partition"], 0);
    assert_eq!(span["offset"], 0);
    assert_eq!(span["attempt"], 1);
    assert_eq!(span["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span["parent_id"], "b7ad6b7169203331");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["offset"], 0, "{line}");
    assert!(
        event["fields"]["plugin"]
            .as_str()
            .is_some_and(|v| v.len() > 4),
        "{line}"
    );
    // The next call reuses the instance: its lines name the new offset.
    let second = ackbar::kafka::Record {
        partition: Some(0),
        key: None,
        payload: b"log:a second line".to_vec(),
        headers: Vec::new(),
    };
    rt.block_on(ackbar::kafka::produce(&brokers, "orders", &[second]))
        .unwrap();
    let line = ackbar.wait_for("a second line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["fields"]["offset"], 1, "{line}");
    assert_eq!(event["fields"]["partition"], 0, "{line}");
    assert_eq!(event["span"]["offset"], 1, "{line}");
    ackbar.signal("TERM");
    assert!(ackbar.wait_exit().success());
}

#[test]
fn a_tenant_whose_pipeline_cannot_start_is_retried_while_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("audit.wasm");
    // A core module, not a component: the pipeline cannot start.
    std::fs::write(&broken, b"\0asm\x01\0\0\0").unwrap();
    let config = format!(
        "brokers = \"embedded\"\n\
         [run]\nsummary_interval_secs = 1\nmetrics_addr = \"127.0.0.1:0\"\n\
         restart_initial_ms = 200\nrestart_max_ms = 400\n\
         [embedded]\npartitions = 1\n\
         [[tenant]]\nname = \"shop\"\ntopics = [\"orders\"]\n\
         [[tenant.pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\n\
         ack_policy = \"ACK\"\nplugin = \"{}\"\n\
         [[tenant]]\nname = \"compliance\"\ntopics = [\"audit\"]\n\
         [[tenant.pipeline]]\nname = \"audit\"\ntopics = [\"audit\"]\ngroup_id = \"a\"\n\
         ack_policy = \"ACK\"\nplugin = \"{}\"\nwatch_plugin = false\n",
        guest("orders").display(),
        broken.display()
    );
    let mut running = RunningAckbar::start(&config, dir.path());
    let brokers = running.broker_address();
    let failed = running.wait_for("pipeline failed to start");
    assert!(failed.contains("is a core WebAssembly module"), "{failed}");
    assert!(failed.contains("tenant=compliance"), "{failed}");
    assert!(
        failed.contains("other pipelines are not affected"),
        "{failed}"
    );
    // The endpoint may come up before or after the first failed start.
    let line = running.seen_or_wait("serving /metrics");
    let addr = line
        .split("http://")
        .nth(1)
        .expect("address")
        .trim()
        .to_string();

    let produce = |topic: &str, payloads: &[&str]| {
        let mut args = vec!["produce", "--brokers", &brokers, "--topic", topic];
        args.extend_from_slice(payloads);
        assert!(ackbar(&args).status.success());
    };
    produce("orders", &[r#"{"id":"a","item":"pen","quantity":1}"#; 3]);
    produce("audit", &["ok", "ok"]);
    running.wait_for("total 3 messages: 3 ok");
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("pipeline audit: down: failed to start: pipeline 'audit': plugin "),
        "{body}"
    );
    let (_, metrics) = http_get(&addr, "/metrics");
    let restarts = series(
        &metrics,
        "ackbar_pipeline_restarts_total",
        &[("tenant", "compliance"), ("pipeline", "audit")],
    );
    assert!(restarts.unwrap_or(0.0) >= 1.0, "{metrics}");

    // Once the plugin is fixed, the next retry starts the pipeline and nothing was lost.
    std::fs::copy(guest("fixture"), &broken).unwrap();
    running.wait_for("total 2 messages: 2 ok");
    poll("/readyz once every pipeline runs", || {
        (http_get(&addr, "/readyz").0 == 200).then_some(())
    });
    running.signal("TERM");
    assert!(running.wait_exit().success());
}

/// `ackbar produce` fed far more lines than librdkafka's local queue holds (100,000 messages)
/// waits for room instead of failing, and the broker ends up with every line, in order.
#[test]
fn produce_delivers_every_line_of_a_large_stdin() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    const LINES: usize = 200_000;
    let broker = ackbar::embedded::EmbeddedBroker::start().unwrap();
    broker.create_topic("bulk", 1).unwrap();
    let input: String = (0..LINES).map(|i| format!("order {i}\n")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ackbar-under-test"))
        .args(["produce", "--brokers", broker.bootstrap_servers()])
        .args(["--topic", "bulk", "--partition", "0"])
        .env("ACKBAR_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ackbar produce");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("200000 of 200000 records delivered to bulk"),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let offsets: Vec<&str> = stdout.lines().collect();
    assert_eq!(offsets.len(), LINES);
    assert_eq!(offsets[LINES - 1], format!("bulk/0 @{}", LINES - 1));
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .unwrap();
    let (low, high) = consumer
        .fetch_watermarks("bulk", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        (low, high),
        (0, LINES as i64),
        "every line is on the broker"
    );
}

/// A broker that takes nothing: `ackbar produce` exits non-zero and names the first record that
/// failed and how many were delivered before it.
#[test]
fn produce_names_the_first_failed_record() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = unused.local_addr().unwrap().to_string();
    drop(unused);
    let out = ackbar(&["produce", "--brokers", &address, "--topic", "t", "a", "b"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("producing record 1 to t:")
            && stderr.contains("(0 of 2 records delivered)"),
        "{stderr}"
    );
}

#[test]
fn run_with_its_metrics_port_taken_ends_with_one_error_before_any_pipeline_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_dir, _config, out) = run_config(&format!(
        "brokers = \"embedded\"\n[run]\nmetrics_addr = \"{addr}\"\n[[pipeline]]\nname = \"orders\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\nack_policy = \"ack\"\nplugin = \"{}\"\n",
        guest("orders").display()
    ));
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "error: [run] metrics_addr {addr}: cannot listen: Address already in use (os error 98)"
        )
    );
}
