fn main() -> std::process::ExitCode {
    ackbar::cli::main_with_args()
}
