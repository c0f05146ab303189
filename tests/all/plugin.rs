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
    ackbar::plugin::block_on(pool.call(&message(payload), &Arc::default()))
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
fn each_partition_gets_back_the_instance_it_used_last() {
    let pool = pool(PluginLimits::default());
    let partition = |topic: &str| {
        Arc::new(CallContext {
            topic: Arc::from(topic),
            ..CallContext::default()
        })
    };
    let (a, b) = (partition("a"), partition("b"));
    let count = |context: &Arc<CallContext>| {
        let outcome = ackbar::plugin::block_on(pool.call(&message("count"), context));
        match outcome.end {
            CallEnd::Failed { message, .. } => message,
            end => panic!("count: {end:?}"),
        }
    };
    // `a` holds an instance (asleep in a host call) when `b` needs one: two instances.
    let (sleep, count_b) = (message("sleep:200"), message("count"));
    let (slept, first_b) = ackbar::plugin::block_on(async {
        tokio::join!(pool.call(&sleep, &a), pool.call(&count_b, &b))
    });
    assert_eq!(slept.label(), "ok");
    assert!(matches!(first_b.end, CallEnd::Failed { ref message, .. } if message == "count 1"));
    assert_eq!(pool.instances_created(), 2);
    // Taking the most recently idle instance would hand `a`'s to `b` and back.
    assert_eq!(count(&a), "count 1");
    assert_eq!(count(&b), "count 2");
    assert_eq!(count(&a), "count 2");
    assert_eq!(count(&b), "count 3");
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
    // Also the deadline of the `ok` call after the trap, on a fresh instance: far above it.
    let pool = pool(PluginLimits {
        deadline: Duration::from_millis(1000),
        ..PluginLimits::default()
    });
    let outcome = call(&pool, "loop");
    match &outcome.end {
        CallEnd::Trapped {
            kind: TrapKind::Deadline,
            detail,
            ..
        } => assert!(
            detail.contains("interrupt"),
            "guest code is interrupted: {detail}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(call(&pool, "ok").label(), "ok");
}

/// A guest blocked in a host call (a WASI sleep) is cut off at its deadline: had the sleep run to
/// its end, the call would have returned `ok`.
#[test]
fn deadline_cuts_off_a_guest_that_sleeps_in_a_host_call() {
    let pool = pool(PluginLimits {
        deadline: Duration::from_millis(200),
        ..PluginLimits::default()
    });
    for payload in ["sleep:15000", "clock-loop"] {
        let outcome = call(&pool, payload);
        assert_eq!(outcome.label(), "trap:deadline", "{payload}: {outcome:?}");
    }
    match call(&pool, "sleep:15000").end {
        CallEnd::Trapped { detail, .. } => {
            assert!(detail.contains("deadline of 200 ms"), "{detail}");
            assert!(detail.contains("host call"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pool.instances_created(),
        3,
        "each cut-off instance was replaced"
    );
    // The same sleep, short, returns: under a deadline no loaded machine can miss.
    let roomy = self::pool(PluginLimits {
        deadline: Duration::from_secs(30),
        ..PluginLimits::default()
    });
    assert_eq!(
        call(&roomy, "sleep:1").label(),
        "ok",
        "a short sleep is fine"
    );
}

/// Instantiation is bounded by the deadline as well as calls; exiting from inside `handle` is a
/// trap, not the end of the host.
#[test]
fn exit_inside_handle_is_a_trap() {
    let pool = pool(PluginLimits::default());
    let outcome = call(&pool, "exit:0");
    assert_eq!(outcome.label(), "trap:other", "{outcome:?}");
    assert_eq!(call(&pool, "ok").label(), "ok");
}

#[test]
fn the_sandbox_grants_no_files_env_or_network() {
    // A live listener: a refusal here is the sandbox's, not an absent server's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let connect = format!("connect:{}", listener.local_addr().unwrap());
    let pool = pool(PluginLimits::default());
    for probe in ["open:/etc/hostname", "env", connect.as_str()] {
        let outcome = call(&pool, probe);
        match &outcome.end {
            CallEnd::Failed { message, .. } => {
                assert!(message.starts_with("refused: "), "{probe}: {message}")
            }
            other => panic!("{probe}: expected a refusal, got {other:?}"),
        }
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the listener: {other:?}"),
    }
    assert!(std::path::Path::new("/etc/hostname").exists());
    assert!(std::env::vars().count() > 0);
}

/// Log lines as the host's log writer receives them.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Calls the fixture with `payload` under a subscriber of this thread only; returns the lines.
fn logged_lines(context: CallContext, payload: &str) -> (Outcome, Vec<String>) {
    let captured = CapturedLog::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let pool = pool(PluginLimits::default());
    let outcome = tracing::subscriber::with_default(subscriber, || {
        ackbar::plugin::block_on(pool.call(&message(payload), &Arc::new(context)))
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (outcome, text.lines().map(str::to_string).collect())
}

#[test]
fn one_huge_log_line_is_cut_and_marked() {
    let (outcome, lines) = logged_lines(CallContext::default(), "big-log:8");
    assert_eq!(outcome.label(), "ok");
    assert_eq!(lines.len(), 1, "{lines:.200?}");
    let line = &lines[0];
    assert!(
        line.len() < ackbar::plugin::MAX_LOG_LINE + 512,
        "{}",
        line.len()
    );
    assert!(
        line.contains("[truncated: 8388608 bytes in all]"),
        "{line:.200}"
    );
}

#[test]
fn a_log_flood_is_held_to_the_tenant_rate_and_counted() {
    let budget = Arc::new(ackbar::plugin::GuestLogBudget::new("noisy", 100));
    let context = CallContext {
        guest_log: budget.clone(),
        ..CallContext::default()
    };
    let started = std::time::Instant::now();
    let (outcome, lines) = logged_lines(context.clone(), "log-flood:20000");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(outcome.label(), "ok");
    let written = lines.iter().filter(|l| l.contains("flood line")).count();
    // The first second's burst, plus what the rate refills while the call runs.
    assert!(written >= 100, "{written}");
    assert!(
        written as f64 <= 100.0 * (1.0 + elapsed) + 1.0,
        "{written} lines in {elapsed:.2} s"
    );
    assert!(lines.iter().any(|l| l.contains("flood line 0")));
    assert!(!lines.iter().any(|l| l.contains("flood line 19999")));
    // A summary of what was dropped comes at most once a second: a flood more than a second
    // after the last summary (or the start) writes one at its first dropped line.
    std::thread::sleep(Duration::from_millis(1100));
    let (outcome, lines) = logged_lines(context, "log-flood:20000");
    assert_eq!(outcome.label(), "ok");
    let summaries: Vec<&String> = lines.iter().filter(|l| l.contains("suppressed")).collect();
    assert!(!summaries.is_empty(), "no summary: {lines:.300?}");
    for summary in summaries {
        assert!(
            summary.contains("tenant 'noisy' is over its limit of 100 lines per second"),
            "{summary}"
        );
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
    // The fixture is of world `packed-batch-handler`: it also takes several messages in one
    // call, packed into one buffer.
    assert_eq!(report.exports, ["handle", "handle-packed-batch"]);
    assert!(
        report
            .imports
            .iter()
            .any(|i| i == "ackbar:plugin/batch@0.1.0"),
        "{:?}",
        report.imports
    );
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
        let ok = ackbar::plugin::block_on(pool.call(
            &message(r#"{"id":"o1","item":"book","quantity":2}"#),
            &Arc::default(),
        ));
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
        // Fuel, not the clock, ends the loop, however slow the machine.
        deadline: Duration::from_secs(60),
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

/// The instance pool is sized for the calls that can run at once, not for every idle instance:
/// when no slot is free, an idle instance of another pool makes room instead of the call failing.
#[test]
fn a_full_instance_pool_drops_an_idle_instance_to_make_room() {
    let options = ackbar::plugin::EngineOptions {
        pooling: Some(ackbar::plugin::PoolSizing {
            instances: 1,
            max_memory_bytes: 64 << 20,
        }),
        ..Default::default()
    };
    let runtime = ackbar::plugin::PluginRuntime::with_engine(None, options).unwrap();
    let pool = || {
        let plugin = runtime
            .load(&guest("fixture"), PluginLimits::default())
            .unwrap();
        InstancePool::new(Arc::new(plugin))
    };
    let (first, second) = (pool(), pool());
    assert_eq!(call(&first, "ok").label(), "ok");
    assert_eq!(
        first.idle_instances(),
        1,
        "the only slot holds first's idle instance"
    );

    assert_eq!(call(&second, "ok").label(), "ok");
    assert_eq!(first.idle_instances(), 0, "first's idle instance made room");
    assert_eq!(second.idle_instances(), 1);

    assert_eq!(call(&first, "ok").label(), "ok");
    assert_eq!((first.idle_instances(), second.idle_instances()), (1, 0));
    assert_eq!(first.instances_created(), 2);
}
