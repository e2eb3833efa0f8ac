//! Logging: `RUST_LOG` filters (default `info`), to standard error.

/// Install the global subscriber once; later calls do nothing.
pub fn init() {
    init_with("info");
}

/// Like [`init`] with another default level (benchmarks log only warnings).
pub fn init_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal: log files stay greppable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
