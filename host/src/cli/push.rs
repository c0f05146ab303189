//! `ackbar push`: publish a handler component to an OCI registry, and print the reference pinned
//! to what was published (`oci://…@sha256:…`), for a deploy that must not follow a moving tag.

use crate::oci::{self, OciReference, Registries};
use crate::plugin::{inspect, PluginRuntime};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// `ackbar push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The handler component (.wasm).
    pub plugin: PathBuf,
    /// Where to publish it: oci://HOST[:PORT]/REPOSITORY[:TAG] (no tag: `latest`).
    pub reference: String,
    /// Reach this registry (HOST or HOST:PORT) over plain HTTP although it is not on loopback
    /// (repeatable). Loopback registries always are; every other one is reached over HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
}

pub async fn run(args: PushArgs) -> Result<()> {
    let reference = OciReference::parse(&args.reference).map_err(anyhow::Error::msg)?;
    if reference.digest().is_some() {
        bail!("{reference}: a push names a tag, not a digest");
    }
    for registry in &args.insecure_registries {
        oci::check_registry_name(registry)
            .map_err(|e| anyhow::anyhow!("--insecure-registry: {e}"))?;
    }
    // What a member would refuse is refused here, before anything is published.
    let runtime = PluginRuntime::new()?;
    inspect(&runtime, &args.plugin)?;
    let bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("{}: cannot read", args.plugin.display()))?;
    let size = bytes.len();
    let registries = Registries::from_env().with_insecure(args.insecure_registries);
    let pinned = oci::push(&registries, &reference, bytes).await?;
    eprintln!(
        "pushed {} ({size} bytes) to {reference}: component {}",
        args.plugin.display(),
        pinned.component
    );
    println!("{}", pinned.reference);
    Ok(())
}
