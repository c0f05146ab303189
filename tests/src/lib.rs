//! What Ackbar's integration tests and benchmarks share and the `ackbar` library does not offer
//! its users: real broker processes, reading a topic back, an OTLP receiver, an OCI registry
//! process, a Wasm byte patcher.

pub mod broker_process;
pub mod kafka;
pub mod otlp;
pub mod registry;
pub mod wasm;

use std::path::{Path, PathBuf};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}
