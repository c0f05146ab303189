//! The plugin runtime on its own: instances, traps, interrupts, sandboxing, `check`.

use crate::support::{guest, runtime};
use ackbar::bindings::Message;
use ackbar::outcome::{CallEnd, Decision, Outcome, TrapKind};
use ackbar::plugin::{inspect, CallContext, InstancePool, PluginLimits};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn message(payload: &str) -> Message {
    Message {
        topic: "t".into(),
        partition: 0,
        offset: 7,
        timestamp: Some(1_700_000_000_000),
        key: None,
        payload: Some(payload.as_bytes().to_vec()),
        headers: vec![],
        attempt: 1,
    }
}

fn pool(limits: PluginLimits) -> InstancePool {
    let plugin = runtime()
        .load(&guest("fixture"), limits)
        .expect("fixture loads");
    InstancePool::new(Arc::new(plugin))
}

fn call(pool: &InstancePool, payload: &str) -> Outcome {
    pool.call(&message(payload), CallContext::default())
}

#[test]
fn instances_are_reused_between_messages() {
    let pool = pool(PluginLimits::default());
    for _ in 0..50 {
        assert_eq!(call(&pool, "ok").label(), "ok");
    }
    assert_eq!(pool.instances_created(), 1);
}

#[test]
fn a_trapped_instance_is_replaced_by_a_fresh_one() {
    let pool = pool(PluginLimits::default());
    assert_eq!(call(&pool, "ok").label(), "ok");
    let trapped = call(&pool, "trap");
    assert_eq!(trapped.label(), "trap:panic");
    assert_eq!(pool.idle_instances(), 0, "the trapped instance is not kept");
    assert_eq!(call(&pool, "ok").label(), "ok");
    assert_eq!(pool.instances_created(), 2);
}

#[test]
fn trap_report_carries_the_guest_stderr_and_the_reason() {
    let pool = pool(PluginLimits::default());
    match call(&pool, "trap").end {
        CallEnd::Trapped {
            kind,
            detail,
            stderr,
        } => {
            assert_eq!(kind, TrapKind::Panic);
            assert!(
                stderr.contains("fixture: about to panic at offset 7"),
                "{stderr}"
            );
            assert!(stderr.contains("requested trap"), "{stderr}");
            assert!(detail.contains("unreachable"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn interrupt_unwinds_from_depth_with_its_decision() {
    let pool = pool(PluginLimits::default());
    for (payload, decision) in [
        ("interrupt-ack", Decision::Ack),
        ("interrupt-nack", Decision::Nack),
        ("interrupt-reject", Decision::Reject),
    ] {
        let outcome = call(&pool, payload);
        assert_eq!(outcome.end, CallEnd::Interrupted(decision));
        assert!(!outcome.is_failure());
    }
    assert_eq!(
        call(&pool, "ok").label(),
        "ok",
        "a fresh instance after an interrupt"
    );
}

#[test]
fn acker_calls_are_recorded_first_one_wins() {
    let pool = pool(PluginLimits::default());
    assert_eq!(call(&pool, "reject").explicit, Some(Decision::Reject));
    assert_eq!(call(&pool, "nack-then-ack").explicit, Some(Decision::Nack));
    assert_eq!(
        call(&pool, "ok").explicit,
        None,
        "decisions do not leak into the next call"
    );
}

#[test]
fn returned_errors_keep_their_kind_and_text() {
    let pool = pool(PluginLimits::default());
    assert_eq!(
        call(&pool, "fatal").end,
        CallEnd::Failed {
            kind: ackbar::outcome::ErrorKind::Fatal,
            message: "requested fatal error".into()
        }
    );
    assert_eq!(pool.instances_created(), 1, "an error return is not a trap");
}

#[test]
fn deadline_interrupts_an_infinite_loop() {
    let pool = pool(PluginLimits {
        deadline: Duration::from_millis(200),
        ..PluginLimits::default()
    });
    let started = std::time::Instant::now();
    let outcome = call(&pool, "loop");
    assert!(
        matches!(
            outcome.end,
            CallEnd::Trapped {
                kind: TrapKind::Deadline,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(call(&pool, "ok").label(), "ok");
}

#[test]
fn the_sandbox_grants_no_files_env_or_network() {
    let pool = pool(PluginLimits::default());
    for probe in ["open:/etc/hostname", "env", "connect:127.0.0.1:9"] {
        let outcome = call(&pool, probe);
        match &outcome.end {
            CallEnd::Failed { message, .. } => {
                assert!(message.starts_with("refused: "), "{probe}: {message}")
            }
            other => panic!("{probe}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn check_reports_world_version_and_imports() {
    let report = inspect(&runtime(), &guest("fixture")).expect("fixture passes check");
    assert_eq!(report.wit_package.as_deref(), Some("ackbar:plugin@0.1.0"));
    assert!(
        report
            .imports
            .iter()
            .any(|i| i == "ackbar:plugin/acker@0.1.0"),
        "{:?}",
        report.imports
    );
    assert_eq!(report.exports, ["handle"]);
    assert_eq!(report.version.len(), 12);
}

fn check_error(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.wasm");
    std::fs::write(&path, bytes).unwrap();
    format!("{:#}", inspect(&runtime(), &path).unwrap_err())
}

#[test]
fn check_refuses_a_core_module() {
    let err = check_error(b"\0asm\x01\0\0\0");
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_file_that_is_not_wasm() {
    let err = check_error(b"hello");
    assert!(err.contains("is not a WebAssembly file"), "{err}");
}

#[test]
fn check_refuses_a_component_of_another_world() {
    // The smallest valid component: it exports nothing.
    let err = check_error(b"\0asm\x0d\0\x01\0");
    assert!(
        err.contains("does not implement world `handler` of ackbar:plugin@0.1.0"),
        "{err}"
    );
}

#[test]
fn load_names_a_missing_file() {
    let err = runtime()
        .load(Path::new("/nonexistent/p.wasm"), PluginLimits::default())
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("plugin /nonexistent/p.wasm: cannot read the file"));
}

#[test]
fn compiled_cache_hits_on_the_next_load_and_rebuilds_a_bad_entry() {
    use ackbar::plugin::{CacheOutcome, PluginRuntime};
    let dir = tempfile::tempdir().unwrap();
    let load = || {
        let runtime = PluginRuntime::with_cache_dir(Some(dir.path().to_path_buf())).unwrap();
        let plugin = runtime
            .load(&guest("orders"), PluginLimits::default())
            .expect("orders loads");
        let outcome = plugin.cache_outcome();
        let pool = InstancePool::new(Arc::new(plugin));
        let ok = pool.call(
            &message(r#"{"id":"o1","item":"book","quantity":2}"#),
            CallContext::default(),
        );
        assert_eq!(ok.label(), "ok", "the loaded plugin runs");
        (outcome, runtime)
    };
    assert_eq!(load().0, CacheOutcome::Miss);
    let (hit, runtime) = load();
    assert_eq!(hit, CacheOutcome::Hit);

    let bytes = std::fs::read(guest("orders")).unwrap();
    let entry = runtime.cache().unwrap().entry_path(&bytes);
    let mut compiled = std::fs::read(&entry).unwrap();
    let middle = compiled.len() / 2;
    compiled[middle] ^= 0x5a;
    std::fs::write(&entry, &compiled).unwrap();
    assert_eq!(load().0, CacheOutcome::Rebuilt, "a flipped byte is caught");
    assert_eq!(load().0, CacheOutcome::Hit);

    std::fs::write(&entry, &compiled[..middle]).unwrap();
    assert_eq!(
        load().0,
        CacheOutcome::Rebuilt,
        "a truncated entry is caught"
    );

    // Well-formed (its checksum matches) but not code this engine wrote: wasmtime refuses it.
    let mut foreign = b"not machine code".to_vec();
    let checksum = sha2_digest(&foreign);
    foreign.extend_from_slice(&checksum);
    std::fs::write(&entry, &foreign).unwrap();
    assert_eq!(load().0, CacheOutcome::Rebuilt);
    assert_eq!(load().0, CacheOutcome::Hit);
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

#[test]
fn a_runtime_without_cache_compiles_every_time() {
    use ackbar::plugin::{CacheOutcome, PluginRuntime};
    let runtime = PluginRuntime::with_cache_dir(None).unwrap();
    let plugin = runtime
        .load(&guest("orders"), PluginLimits::default())
        .unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Uncached);
}

#[test]
fn fuel_bounds_a_call_deterministically_and_refills_for_the_next() {
    use ackbar::plugin::PluginRuntime;
    let limits = PluginLimits {
        fuel: Some(50_000_000),
        ..PluginLimits::default()
    };
    let unmetered = runtime().load(&guest("fixture"), limits);
    let err = unmetered
        .err()
        .expect("a fuel limit needs metering")
        .to_string();
    assert!(
        err.contains("a fuel limit needs a runtime that meters fuel"),
        "{err}"
    );

    let metered = PluginRuntime::with_options(None, true).unwrap();
    let plugin = metered.load(&guest("fixture"), limits).unwrap();
    let pool = InstancePool::new(Arc::new(plugin));
    for _ in 0..3 {
        let outcome = call(&pool, "loop");
        assert!(
            matches!(
                outcome.end,
                CallEnd::Trapped {
                    kind: TrapKind::Fuel,
                    ..
                }
            ),
            "{outcome:?}"
        );
        // The budget is per call: a normal message after an exhausted one still runs.
        assert_eq!(call(&pool, "ok").label(), "ok");
    }
}
