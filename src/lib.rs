//! plexgate: the daemon, CLI and I/O layers on top of the sans-IO protocol crates.
