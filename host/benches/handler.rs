//! Micro-benchmarks of the per-message path: the policy decision, the offset tracker, a `handle`
//! call on a reused instance (Wasm) next to the same logic compiled natively, and instantiation
//! from `InstancePre` (the cost paid after a trap). `make bench-handler` runs them.

use ackbar::bindings::Message;
use ackbar::offsets::{Completion, PartitionProgress};
use ackbar::outcome::Outcome;
use ackbar::plugin::{CallContext, InstancePool, PluginInstance, PluginLimits, PluginRuntime};
use ackbar::policy::{decide, AckPolicy};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::sync::Arc;

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

fn handler_calls(c: &mut Criterion) {
    let runtime = PluginRuntime::new().unwrap();
    let plugin = Arc::new(
        runtime
            .load(&guest("orders"), PluginLimits::default())
            .unwrap(),
    );
    let pool = InstancePool::new(plugin.clone());
    pool.warm_up().unwrap();
    let msg = message(ORDER);
    c.bench_function("orders handle: wasm, reused instance", |b| {
        b.iter(|| pool.call(black_box(&msg), CallContext::default()))
    });
    c.bench_function("orders handle: native Rust", |b| {
        b.iter(|| orders::process(black_box(msg.payload.as_deref().unwrap()), 1))
    });
    c.bench_function("instantiate from InstancePre", |b| {
        b.iter(|| PluginInstance::new(&plugin).unwrap())
    });
}

criterion_group!(benches, host_logic, handler_calls);
criterion_main!(benches);
