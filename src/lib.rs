//! plexgate: the daemon, CLI and I/O layers on top of the sans-IO protocol crates
//! (`plexgate-wire`, `-ipsec`, `-ike`, `-pki`, `-policy`, `-distrib`).
#![warn(missing_docs)]

pub mod ctl;
pub mod io;
pub mod metrics;
