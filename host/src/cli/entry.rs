//! The process around a command: logging, the async runtime, the exit status.

use super::{Cli, Command, LogFormat};
use clap::Parser;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The `ackbar` program: parses the command line, sets up logging and the async runtime, runs the
/// command and turns its result into the exit status. `main` of every `ackbar` binary.
pub fn main_with_args() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Check { .. } | Command::Invoke(_) | Command::New(_)
    ) {
        // Printing commands end quietly when their reader goes away (`ackbar check x | head`),
        // as Unix tools do, instead of panicking on a broken pipe. Not for `run`: its sockets
        // must never raise SIGPIPE.
        restore_default_sigpipe();
    }
    let default_filter = match cli.command {
        // The demo prints its own story; only problems are logged.
        Command::Demo(_) => "error",
        _ => "info",
    };
    let filter =
        EnvFilter::try_from_env("ACKBAR_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Pretty => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object per line; the enclosing message span's fields (tenant, pipeline,
        // topic, partition, offset, attempt, plugin, trace_id) are flattened into it.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(super::main(cli));
    // A guest call still running after the drain timeout is dropped with the runtime; a blocking
    // host task it started (a granted file read) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn restore_default_sigpipe() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: resets one signal's disposition before any thread is started.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}
