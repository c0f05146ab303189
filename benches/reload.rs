//! Hot-reload benchmark: how long from writing a new plugin file to the first message handled by
//! it, and what a swap does to throughput. Run with `make bench-reload` (builds the guests).

use ackbar::config::PipelineConfig;
use ackbar::consumer::Pipeline;
use ackbar::embedded::EmbeddedBroker;
use ackbar::kafka::{self, Record};
use ackbar::plugin::{version_id, PluginRuntime};
use ackbar::policy::AckPolicy;
use ackbar_tests::wasm::tag_component;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MESSAGES: usize = 400_000;
const PARTITIONS: i32 = 8;
const SWAPS: u32 = 10;
const WINDOW: Duration = Duration::from_millis(100);

fn fixture() -> Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-examples/rust/target/wasm32-wasip2/release/fixture.wasm");
    anyhow::ensure!(
        path.is_file(),
        "{} missing: run guest-examples/rust/build.sh",
        path.display()
    );
    Ok(path)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let original = std::fs::read(fixture()?)?;
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("handler.wasm");
    std::fs::write(&plugin, tag_component(&original, 0))?;

    let broker = EmbeddedBroker::start()?;
    let bootstrap = broker.bootstrap_servers().to_string();
    broker.create_topic("bench", PARTITIONS)?;
    let records: Vec<Record> = (0..MESSAGES)
        .map(|i| Record::new(i as i32 % PARTITIONS, "ok"))
        .collect();
    for chunk in records.chunks(50_000) {
        kafka::produce(&bootstrap, "bench", chunk).await?;
    }

    let mut config = PipelineConfig::new("reload-bench", &["bench"], &plugin);
    config.group_id = Some("reload-bench".into());
    config.ack_policy = AckPolicy::Ack;
    config
        .kafka
        .insert("session.timeout.ms".into(), "6000".into());
    let runtime = PluginRuntime::new()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = Pipeline::start(config, &bootstrap, &runtime, Some(tx))?;

    // Wait for the first message (group join), then measure.
    let first = rx.recv().await.context("no message")?;
    let mut handled = 1usize;
    let mut windows: Vec<(usize, bool)> = Vec::new(); // (messages, a swap happened in it)
    let mut latencies = Vec::new();
    let mut pending: Option<(String, Instant)> = None;
    let mut next_swap = Instant::now() + Duration::from_millis(500);
    let mut tag = 0;
    let mut window_start = Instant::now();
    let mut window_count = 0usize;
    let mut window_swapped = false;
    drop(first);
    while handled < MESSAGES {
        if pending.is_none() && tag < SWAPS && Instant::now() >= next_swap {
            tag += 1;
            let bytes = tag_component(&original, tag);
            let version = version_id(&bytes);
            let written = Instant::now();
            std::fs::write(&plugin, &bytes)?;
            pending = Some((version, written));
            window_swapped = true;
        }
        let Ok(Some(report)) = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await
        else {
            if pending.is_none() && tag >= SWAPS && handled + 1 >= MESSAGES {
                break;
            }
            continue;
        };
        handled += 1;
        window_count += 1;
        if let Some((version, written)) = &pending {
            if &*report.plugin_version == version {
                latencies.push(written.elapsed());
                pending = None;
                next_swap = Instant::now() + Duration::from_millis(300);
            }
        }
        if window_start.elapsed() >= WINDOW {
            windows.push((window_count, window_swapped));
            window_start = Instant::now();
            window_count = 0;
            window_swapped = false;
        }
    }
    let stats = pipeline.shutdown().await?;

    latencies.sort();
    let rate = |ws: Vec<usize>| -> f64 {
        if ws.is_empty() {
            return 0.0;
        }
        ws.iter().sum::<usize>() as f64 / ws.len() as f64 / WINDOW.as_secs_f64()
    };
    // The first and last windows are partial.
    let inner = &windows[1..windows.len().saturating_sub(1)];
    let steady = rate(inner.iter().filter(|w| !w.1).map(|w| w.0).collect());
    let during = rate(inner.iter().filter(|w| w.1).map(|w| w.0).collect());
    println!("hot reload, Rust fixture component ({} bytes), {MESSAGES} messages, {PARTITIONS} partitions, ACK", original.len());
    println!("swaps completed:            {} of {SWAPS}", latencies.len());
    if !latencies.is_empty() {
        println!(
            "file write -> first message on new version: p50 {:.1} ms, max {:.1} ms (includes {} ms debounce + stability wait and compile)",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
            150 + 50
        );
    }
    println!("throughput steady:          {steady:.0} msg/s");
    println!(
        "throughput in swap windows: {during:.0} msg/s ({:.0}% of steady)",
        100.0 * during / steady.max(1.0)
    );
    println!("handled: {} messages, {} ok", stats.messages, stats.ok);
    Ok(())
}
