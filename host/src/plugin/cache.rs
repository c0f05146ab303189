//! On-disk cache of compiled components.
//!
//! Cranelift needs 10–20 s for an interpreter-based guest (JavaScript, Python); loading the
//! machine code it produced takes milliseconds. Entries are keyed by the SHA-256 of the
//! component *and* the engine's compatibility hash (wasmtime version, target, every setting that
//! changes code generation), so a new Ackbar or different engine settings never pick up stale
//! code. Deserializing machine code trusts it completely, so each entry ends with a SHA-256 of
//! its own body that is checked before use: a truncated or corrupted file is recompiled and
//! replaced, never loaded.

use crate::text::hex;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Entries kept before the least recently used ones are removed (hot reload adds one per version).
const MAX_ENTRIES: usize = 64;
const CHECKSUM_LEN: usize = 32;

/// Where the cache lives by default: `$ACKBAR_CACHE_DIR`, else `$XDG_CACHE_HOME/ackbar/compiled`,
/// else `~/.cache/ackbar/compiled`. `ACKBAR_CACHE_DIR=off` disables it.
pub fn default_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("ACKBAR_CACHE_DIR") {
        Some(dir) if dir == "off" => return None,
        Some(dir) if !dir.is_empty() => return Some(PathBuf::from(dir)),
        _ => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ackbar").join("compiled"))
}

/// How a component was obtained, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled and stored: there was no entry.
    Miss,
    /// Compiled and stored over an entry that failed its checksum or was refused by wasmtime.
    Rebuilt,
    /// Compiled without a cache (disabled, or the entry could not be written).
    Uncached,
}

/// The on-disk cache of one engine's compiled components, keyed by content and engine hash.
/// At most 64 entries; the least recently used are removed first.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompiledCache {
    /// A cache in `dir` for code compiled by `engine`. Nothing is read or written until a load;
    /// the directory is created by the first store.
    pub fn new(engine: &Engine, dir: PathBuf) -> Self {
        CompiledCache {
            dir,
            engine_key: engine_key(engine),
        }
    }

    /// The file that holds (or would hold) the compiled form of `bytes`.
    pub fn entry_path(&self, bytes: &[u8]) -> PathBuf {
        let content = hex(&Sha256::digest(bytes));
        self.dir
            .join(format!("{content}-{}.cwasm", self.engine_key))
    }

    /// Returns the compiled component, from the cache when a valid entry exists. Cache trouble
    /// (unwritable directory, corrupt entry) is logged and never fails the load.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        shown: &dyn std::fmt::Display,
    ) -> Result<(Component, CacheOutcome)> {
        let path = self.entry_path(bytes);
        let mut stale = false;
        if let Ok(entry) = std::fs::read(&path) {
            match verified_body(&entry) {
                Some(body) => {
                    // SAFETY: the body was produced by `Engine::precompile_component` of an engine
                    // with the same compatibility hash (it is in the file name), and its checksum
                    // shows it is byte for byte what was written.
                    match unsafe { Component::deserialize(engine, body) } {
                        Ok(component) => {
                            touch(&path);
                            return Ok((component, CacheOutcome::Hit));
                        }
                        Err(e) => tracing::warn!(
                            "plugin {shown}: cached compilation {} refused ({e}); recompiling",
                            path.display()
                        ),
                    }
                }
                None => tracing::warn!(
                    "plugin {shown}: cached compilation {} is corrupt (checksum mismatch); recompiling",
                    path.display()
                ),
            }
            stale = true;
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown}: not a valid component"))?;
        // SAFETY: produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {shown}: loading its compiled form"))?;
        let outcome = match self.store(&path, &compiled) {
            Ok(()) if stale => CacheOutcome::Rebuilt,
            Ok(()) => CacheOutcome::Miss,
            Err(e) => {
                tracing::warn!(
                    "plugin {shown}: cannot write the compilation cache in {}: {e:#}",
                    self.dir.display()
                );
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }

    /// Writes an entry atomically (temporary file, then rename), so a reader never sees half of it.
    fn store(&self, path: &Path, compiled: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(compiled)?;
        tmp.write_all(&Sha256::digest(compiled))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        self.evict();
        Ok(())
    }

    /// Keeps the newest `MAX_ENTRIES` entries (by last use).
    fn evict(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, PathBuf)> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, old) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The body of an entry whose trailing checksum matches, else `None`.
fn verified_body(entry: &[u8]) -> Option<&[u8]> {
    let split = entry.len().checked_sub(CHECKSUM_LEN)?;
    let (body, checksum) = entry.split_at(split);
    (Sha256::digest(body).as_slice() == checksum).then_some(body)
}

/// Marks an entry as recently used, for eviction.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A stable digest of everything that makes compiled code (in)compatible with `engine`.
fn engine_key(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is used")
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_detects_any_change() {
        let body = b"compiled code".to_vec();
        let mut entry = body.clone();
        entry.extend_from_slice(&Sha256::digest(&body));
        assert_eq!(verified_body(&entry), Some(&body[..]));
        entry[3] ^= 1;
        assert_eq!(verified_body(&entry), None);
        assert_eq!(verified_body(&entry[..10]), None);
        assert_eq!(verified_body(b""), None);
    }
}
