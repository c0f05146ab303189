//! `ackbar check`: does a file implement the handler world, and what does it import?

use super::runtime::{PluginLimits, PluginRuntime};
use anyhow::Result;
use std::path::Path;

/// What `ackbar check` reports about a plugin that loads.
#[derive(Debug, Clone)]
pub struct PluginReport {
    /// The plugin's [`version_id`](crate::plugin::version_id), as logs and reports show it.
    pub version: String,
    /// The `ackbar:plugin` package version the component was built against, when it says.
    pub wit_package: Option<String>,
    /// Every import of the component, as it names it (`ackbar:plugin/acker@0.1.0`,
    /// `wasi:cli/environment@0.2.0`, ...).
    pub imports: Vec<String>,
    /// Every export of the component; a handler has `handle`.
    pub exports: Vec<String>,
}

/// Loads a plugin the way `ackbar run` would and describes it. The error of a plugin that does
/// not load is a single line naming the file and what is missing.
pub fn inspect(runtime: &PluginRuntime, path: &Path) -> Result<PluginReport> {
    let plugin = runtime.load(path, PluginLimits::default())?;
    let engine = runtime.engine();
    let ty = plugin.component().component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let wit_package = imports
        .iter()
        .find_map(|name| name.strip_prefix("ackbar:plugin/"))
        .and_then(|rest| rest.split_once('@'))
        .map(|(_, version)| format!("ackbar:plugin@{version}"));
    Ok(PluginReport {
        version: plugin.version().to_string(),
        wit_package,
        imports,
        exports,
    })
}
