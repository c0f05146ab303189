//! Argument parsing and defaults shared by several commands.

use crate::policy::AckPolicy;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Parses a policy name for clap.
pub fn parse_policy(s: &str) -> Result<AckPolicy, String> {
    s.parse()
}

/// The example plugin built by `guest-examples/rust/build.sh`, looked up from the working
/// directory and from the executable's location.
pub fn default_example_plugin(name: &str) -> Result<PathBuf> {
    let relative = PathBuf::from("guest-examples/rust/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    let mut candidates = vec![relative.clone()];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(&relative));
        }
    }
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the example plugin {} is not built: run `make demo` (or guest-examples/rust/build.sh), or pass --plugin",
        relative.display()
    )
}
