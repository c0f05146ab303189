//! `ackbar-go-componentize bindings WIT_DIR WORLD GO_PACKAGE OUT_DIR`
//!     writes the Go bindings of WORLD (wit-bindgen 0.63's Go generator, library layout:
//!     OUT_DIR/imports/..., OUT_DIR/exports/...) for import path prefix GO_PACKAGE.
//! `ackbar-go-componentize component WIT_DIR WORLD CORE_WASM OUT_WASM`
//!     embeds WORLD's metadata into a wasip1 core module and turns it into a component,
//!     adapting wasi_snapshot_preview1 with wasmtime 48's reactor adapter.
//! `ackbar-go-componentize go-pkg-version`
//!     prints the version of go.bytecodealliance.org/pkg the generated code needs.

use anyhow::{Context, Result, bail};
use std::path::Path;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::{Resolve, WorldId};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};

fn load(wit: &str, world: &str) -> Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {wit}"))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    Ok((resolve, world))
}

fn bindings(wit: &str, world: &str, go_package: &str, out: &str) -> Result<()> {
    let (mut resolve, world) = load(wit, world)?;
    let opts = wit_bindgen_go::Opts {
        pkg_name: Some(go_package.to_string()),
        quiet: true,
        ..Default::default()
    };
    let mut files = Files::default();
    opts.build().generate(&mut resolve, world, &mut files)?;
    let out = Path::new(out);
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn component(wit: &str, world: &str, core: &str, out: &str) -> Result<()> {
    let (resolve, world) = load(wit, world)?;
    let mut module = std::fs::read(core).with_context(|| format!("reading {core}"))?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8, false)?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()?;
    std::fs::write(out, component).with_context(|| format!("writing {out}"))?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["bindings", wit, world, go_package, out] => bindings(wit, world, go_package, out),
        ["component", wit, world, core, out] => component(wit, world, core, out),
        ["go-pkg-version"] => {
            println!("{}", wit_bindgen_go::remote_pkg_version());
            Ok(())
        }
        _ => bail!(
            "usage: ackbar-go-componentize bindings WIT_DIR WORLD GO_PACKAGE OUT_DIR\n       \
             ackbar-go-componentize component WIT_DIR WORLD CORE_WASM OUT_WASM\n       \
             ackbar-go-componentize go-pkg-version"
        ),
    }
}
