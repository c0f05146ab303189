//! Micro-benchmarks of the per-message path: the policy decision, the offset tracker, a `handle`
//! call on a reused instance for the `orders` example of every language next to the same logic
//! compiled natively, instantiation from `InstancePre` (the cost paid after a trap), and loading
//! a component compiled from scratch vs from the on-disk cache. `make bench-handler` runs them.
//! Each `handle` is measured on a small order and on the 1 KiB orders of the end-to-end benchmark,
//! whose handler times in the stream are comparable with the latter only.

mod common;

use ackbar::bindings::Message;
use ackbar::offsets::{Completion, PartitionProgress};
use ackbar::outcome::Outcome;
use ackbar::plugin::{
    BatchCall, CallContext, InstancePool, PluginInstance, PluginLimits, PluginRuntime,
};
use ackbar::policy::{decide, AckPolicy, DeliveryRules};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const ORDER: &[u8] = br#"{"id":"o1","item":"book","quantity":2}"#;

fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../guest-examples/rust/target/wasm32-wasip2/release/{name}.wasm"
    ));
    assert!(
        path.is_file(),
        "{} missing: run guest-examples/rust/build.sh",
        path.display()
    );
    path
}

fn message(payload: &[u8]) -> Message {
    Message {
        topic: "orders".into(),
        partition: 0,
        offset: 42,
        timestamp: Some(1_700_000_000_000),
        key: Some(b"customer-7".to_vec()),
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        attempt: 1,
    }
}

fn host_logic(c: &mut Criterion) {
    let ok = Outcome::returned(None);
    c.bench_function("policy decide", |b| {
        b.iter(|| decide(black_box(AckPolicy::NackOnError), black_box(&ok)))
    });
    let mut progress = PartitionProgress::default();
    let mut offset = 0i64;
    c.bench_function("offset tracker begin+complete", |b| {
        b.iter(|| {
            progress.begin(offset);
            progress.complete(offset, Completion::Settled);
            offset += 1;
        })
    });
}

/// Calls run on a fiber and are awaited, as in a pipeline: on a single-threaded executor here, so
/// the figure is the call plus one `block_on`.
fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn handler_calls(c: &mut Criterion) {
    let rt = executor();
    let runtime = PluginRuntime::new().unwrap();
    let plugin = Arc::new(
        runtime
            .load(&guest("orders"), PluginLimits::default())
            .unwrap(),
    );
    let pool = InstancePool::new(plugin.clone());
    rt.block_on(pool.warm_up()).unwrap();
    let msg = message(ORDER);
    let context = Arc::new(CallContext::default());
    c.bench_function("orders handle: wasm, reused instance", |b| {
        b.iter(|| rt.block_on(pool.call(black_box(&msg), &context)))
    });
    c.bench_function("orders handle: native Rust", |b| {
        b.iter(|| orders::process(black_box(msg.payload.as_deref().unwrap()), 1))
    });
    let big = message(&common::order(1, false));
    c.bench_function("orders handle, 1 KiB order: wasm, reused instance", |b| {
        b.iter(|| rt.block_on(pool.call(black_box(&big), &context)))
    });
    c.bench_function("orders handle, 1 KiB order: native Rust", |b| {
        b.iter(|| orders::process(black_box(big.payload.as_deref().unwrap()), 1))
    });
    c.bench_function("instantiate from InstancePre", |b| {
        b.iter(|| rt.block_on(PluginInstance::new(&plugin)).unwrap())
    });
    // What the sandbox costs per call whatever the handler does: the fixture returns at once
    // for a payload that is not one of its commands.
    let no_op = InstancePool::new(Arc::new(
        runtime
            .load(&guest("fixture"), PluginLimits::default())
            .unwrap(),
    ));
    rt.block_on(no_op.warm_up()).unwrap();
    for (name, msg) in [("no-op handle", &msg), ("no-op handle, 1 KiB order", &big)] {
        let ok = rt.block_on(no_op.call(msg, &context));
        assert_eq!(ok.label(), "ok", "{name}: {ok:?}");
        c.bench_function(&format!("{name}: wasm, reused instance"), |b| {
            b.iter(|| rt.block_on(no_op.call(black_box(msg), &context)))
        });
    }
    // The fixture as built for world `batch-handler` takes the batch as a list of messages;
    // today's SDK builds take it packed into one buffer (world `packed-batch-handler`).
    let no_op_listed = InstancePool::new(Arc::new(
        runtime
            .load(
                &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/fixtures/fixture-batch-handler-0.1.0.wasm"),
                PluginLimits::default(),
            )
            .unwrap(),
    ));
    // The same 1 KiB order 64 times in one batch call: the price per message when the sandbox
    // is entered once per batch.
    let batch: Vec<Message> = (0..64).map(|_| big.clone()).collect();
    let mut group = c.benchmark_group("handle-batch of 64 1 KiB orders");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, pool) in [
        ("orders", &pool),
        ("no-op", &no_op),
        ("no-op, as a list (world batch-handler)", &no_op_listed),
    ] {
        let call = || call_batch(&rt, pool, &batch, &context);
        assert_eq!(call(), batch.len(), "{name}: every message handled");
        group.bench_function(format!("{name}: wasm, reused instance"), |b| b.iter(call));
    }
    group.finish();
}

/// One batch call of `pool` on `batch` under ACK; how many messages it finished.
fn call_batch(
    rt: &tokio::runtime::Runtime,
    pool: &InstancePool,
    batch: &[Message],
    context: &Arc<CallContext>,
) -> usize {
    let (sink, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let spans = vec![tracing::Span::none(); batch.len()].into();
    let stop = CancellationToken::new();
    let rules = DeliveryRules {
        policy: AckPolicy::Ack,
        max_attempts: None,
        dead_letters: false,
        backoff: Default::default(),
    };
    let call = BatchCall::new(batch, spans, rules, stop, sink);
    rt.block_on(pool.call_batch(black_box(batch), call, context));
    let mut handled = 0;
    while finished.try_recv().is_ok() {
        handled += 1;
    }
    handled
}

const LANGUAGES: [&str; 4] = ["rust", "go", "js", "python"];

fn example(language: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../guest-examples/{language}/target/orders.wasm"));
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping {language}: {} is not built (make guests)",
            path.display()
        );
        None
    }
}

/// `handle` and instantiation for every language's `orders`, and how long a component takes to
/// load compiled from scratch (printed once: it takes seconds) vs from the cache.
fn languages(c: &mut Criterion) {
    let rt = executor();
    let cache = tempfile::tempdir().unwrap();
    let cached = PluginRuntime::with_cache_dir(Some(cache.path().to_path_buf())).unwrap();
    let msg = message(ORDER);
    let big = message(&common::order(1, false));
    for language in LANGUAGES {
        let Some(path) = example(language) else {
            continue;
        };
        let size = std::fs::metadata(&path).unwrap().len();
        let started = std::time::Instant::now();
        let plugin = Arc::new(cached.load(&path, PluginLimits::default()).unwrap());
        eprintln!(
            "{language}: {:.1} MB component, first load (compile + cache write) {:.2} s",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let pool = InstancePool::new(plugin.clone());
        rt.block_on(pool.warm_up()).unwrap();
        let context = Arc::new(CallContext::default());
        let ok = rt.block_on(pool.call(&msg, &context));
        assert_eq!(ok.label(), "ok");
        let mut group = c.benchmark_group(language);
        group.bench_function("orders handle, reused instance", |b| {
            b.iter(|| rt.block_on(pool.call(black_box(&msg), &context)))
        });
        group.bench_function("orders handle, 1 KiB order, reused instance", |b| {
            b.iter(|| rt.block_on(pool.call(black_box(&big), &context)))
        });
        // A payload rejected at its first byte: what a call costs the language beyond its work,
        // the part one call per batch would save.
        let not_json = message(b"x");
        group.bench_function("orders handle, not JSON, reused instance", |b| {
            b.iter(|| rt.block_on(pool.call(black_box(&not_json), &context)))
        });
        // The same order 64 times in one batch call, per message, for the languages whose SDK
        // batches (worlds `batch-handler` and `packed-batch-handler`).
        if pool.batches() {
            let batch: Vec<Message> = (0..64).map(|_| big.clone()).collect();
            let call = || call_batch(&rt, &pool, &batch, &context);
            assert_eq!(call(), batch.len(), "{language}: every message handled");
            group.throughput(Throughput::Elements(batch.len() as u64));
            group.bench_function(
                "orders handle-batch of 64 1 KiB orders, reused instance",
                |b| b.iter(call),
            );
            group.throughput(Throughput::Elements(1));
        }
        group.sample_size(10);
        group.bench_function("instantiate from InstancePre", |b| {
            b.iter(|| rt.block_on(PluginInstance::new(&plugin)).unwrap())
        });
        group.bench_function("load from the compiled cache", |b| {
            b.iter(|| cached.load(&path, PluginLimits::default()).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, host_logic, handler_calls, languages);
criterion_main!(benches);
