//! Errors of the lab.
//!
//! Every failure of the lab (a command that failed or timed out, a missing tool, a
//! peer that did not come up) is a [`LabError`] with a message that says what was
//! attempted and, where there is one, what the command printed, so that a failing
//! end-to-end test explains itself in `cargo test` output.

use std::time::Duration;

/// Result alias of the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// What went wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Required tools are missing from this machine.
    #[error(
        "lab prerequisites missing: {missing}. Run scripts/setup.sh (as root) to install them"
    )]
    Missing {
        /// Human-readable list of what is missing.
        missing: String,
    },
    /// A command ran but exited unsuccessfully.
    #[error("command `{cmd}` failed ({status}): {output}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status as text.
        status: String,
        /// Captured stdout and stderr (trimmed).
        output: String,
    },
    /// A command or a wait did not finish in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value the lab refuses to write (it would corrupt a config file).
    #[error("invalid lab configuration: {0}")]
    Config(String),
    /// Output of a tool could not be understood.
    #[error("could not parse {what}: {detail}")]
    Parse {
        /// Which output.
        what: String,
        /// Why.
        detail: String,
    },
    /// A data check failed (for instance a transfer whose digest does not match).
    #[error("verification failed: {0}")]
    Verify(String),
    /// A name that is not part of the topology.
    #[error("unknown {kind} `{name}` in topology")]
    Unknown {
        /// "host" or "link".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
}

impl LabError {
    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}
