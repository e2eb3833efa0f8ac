//! plexgate: the daemon, CLI and I/O layers on top of the sans-IO protocol crates
//! (`plexgate-wire`, `-ipsec`, `-ike`, `-pki`, `-policy`, `-distrib`).
#![warn(missing_docs)]

pub mod bench;
pub mod ctl;
pub mod demo;
pub mod gateway;
pub mod io;
pub mod l2;
pub mod logging;
pub mod metrics;
pub mod privs;
/// The in-memory cluster harness for tests (gateways, targets, clients and a
/// store on virtual time); see `docs/testing.md`.
pub mod sim;
pub mod site_template;
pub mod status;
pub mod target;

/// `plexgate policy check FILE…`: print every diagnostic; fail if any file has errors.
pub fn policy_check(files: &[std::path::PathBuf]) -> std::process::ExitCode {
    let mut failed = false;
    for f in files {
        let report = plexgate_policy::check(f);
        print!("{report}");
        if report.has_errors() {
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
