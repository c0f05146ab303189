//! The `ackbar` program, built in this package so that cargo builds it together with the tests
//! (same profile and features) and hands its path to them as `CARGO_BIN_EXE_ackbar-under-test`.

fn main() -> std::process::ExitCode {
    ackbar::cli::main_with_args()
}
