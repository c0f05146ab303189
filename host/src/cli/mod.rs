//! The `ackbar` command line: the arguments, and one module per command.

mod args;
mod check;
mod demo;
mod entry;
mod fleet;
mod invoke;
mod new;
mod produce;
mod push;
mod run;

pub use entry::main_with_args;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The `ackbar` command line: one [`Command`] and the options every command shares.
#[derive(Debug, Parser)]
#[command(
    name = "ackbar",
    version,
    about = "A WebAssembly plugin host for Kafka consumers"
)]
pub(crate) struct Cli {
    /// The command to run, with its own arguments.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format on stderr: `pretty` for people, `json` (one object per line, with the
    /// message span's fields) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines, colored when stderr is a terminal.
    Pretty,
    /// One JSON object per line, with the fields of the message's span.
    Json,
}

/// What `ackbar` is asked to do: one variant per subcommand.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the pipelines of a config file until SIGINT/SIGTERM.
    Run {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Zero-setup demo: embedded broker, sample orders, the Rust example handler.
    Demo(demo::DemoArgs),
    /// Check that a file is a handler component for this host and list what it imports.
    Check {
        /// The plugin (.wasm component).
        plugin: PathBuf,
    },
    /// Call a plugin with messages, without a broker, and print what each delivery did.
    Invoke(invoke::InvokeArgs),
    /// Produce messages: each PAYLOAD argument, or each line of stdin when none is given.
    Produce(produce::ProduceArgs),
    /// Write a new handler project (handler, unit test, manifest, Makefile, ackbar.toml) into a
    /// new directory, for Rust, Go, JavaScript or Python.
    New(new::NewArgs),
    /// Publish a handler component to an OCI registry (the Wasm artifact layout `wkg` uses) and
    /// print the reference pinned to it, `oci://HOST[:PORT]/REPOSITORY:TAG@sha256:…`.
    Push(push::PushArgs),
    /// Deploy a handler to every fleet member serving the tenant (`ackbar run` with
    /// `[control]`), and wait until each runs it or refuses it.
    Deploy(fleet::DeployArgs),
    /// Return a deployed pipeline to an earlier deploy, on every member.
    Rollback(fleet::RollbackArgs),
    /// Stop a deployed pipeline on every member (offsets of what it handled are committed).
    Undeploy(fleet::TargetArgs),
    /// What each live fleet member runs.
    Status(fleet::StatusArgs),
}

/// Runs the command to its end inside the caller's Tokio runtime. Logging is the caller's to set
/// up (the binary does it from `--log-format` and `ACKBAR_LOG`); the binary prints the error and
/// exits with a failure status.
pub(crate) async fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => run::run(config).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Check { plugin } => check::run(plugin),
        // Guest calls block (WASI output flushes enter tokio): keep them off the async workers.
        Command::Invoke(args) => tokio::task::spawn_blocking(move || invoke::run(args)).await?,
        Command::Produce(args) => produce::run(args).await,
        Command::New(args) => new::run(args),
        Command::Push(args) => push::run(args).await,
        Command::Deploy(args) => fleet::deploy(args).await,
        Command::Rollback(args) => fleet::rollback(args).await,
        Command::Undeploy(args) => fleet::undeploy(args).await,
        Command::Status(args) => fleet::status(args).await,
    }
}
