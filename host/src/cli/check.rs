//! `ackbar check`: is a file a handler component for this host, and what does it import.

use crate::plugin::{inspect, PluginRuntime};
use anyhow::Result;
use std::path::PathBuf;

pub fn run(path: PathBuf) -> Result<()> {
    let runtime = PluginRuntime::new()?;
    let report = inspect(&runtime, &path)?;
    println!(
        "ok: {} implements world handler of {} (version {})",
        path.display(),
        report
            .wit_package
            .as_deref()
            .unwrap_or(crate::bindings::WIT_PACKAGE),
        report.version
    );
    println!("exports:");
    for e in &report.exports {
        println!("  {e}");
    }
    println!("imports:");
    for i in &report.imports {
        println!("  {i}");
    }
    Ok(())
}
