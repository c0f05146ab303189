//! What Ackbar's integration tests and benchmarks share and the `ackbar` library does not offer
//! its users: real broker processes, reading a topic back, a Wasm byte patcher, and the `ackbar`
//! binary built for the profile of the calling build.

pub mod broker_process;
pub mod kafka;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `ackbar` executable, built once per process by cargo with the profile this code was built
/// with (a test run gets a dev build, a benchmark a release build), in the same target directory.
pub fn ackbar_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let build = escargot::CargoBuild::new()
            .manifest_path(repo_root().join("Cargo.toml"))
            .package("ackbar")
            .bin("ackbar")
            .arg("--locked");
        let build = if cfg!(debug_assertions) {
            build
        } else {
            build.release()
        };
        build
            .run()
            .unwrap_or_else(|e| panic!("building the ackbar binary: {e}"))
            .path()
            .to_path_buf()
    })
}
