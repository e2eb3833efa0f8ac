//! Errors of the store operations. A backend maps its own failures onto these few
//! kinds so that callers (the record writer, the ownership module) can tell a store
//! that is away for a while ([`StoreError::is_transient`]) from a request that can
//! never succeed.

use crate::kv::LeaseId;

/// What went wrong with a store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (connection refused, timed out, told to fail).
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// The store is reachable but refused to write (read-only, no quorum, out of space).
    #[error("store refused the write: {0}")]
    Refused(String),
    /// The lease does not exist (never granted, revoked, or expired).
    #[error("lease {0} is unknown or has expired")]
    LeaseExpired(LeaseId),
    /// A key the store cannot hold.
    #[error("bad store key {key:?}: {why}")]
    BadKey {
        /// The key.
        key: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// More operations in one transaction than every backend accepts.
    #[error("transaction of {ops} operations: at most {max} in one transaction")]
    TooLarge {
        /// Operations asked for.
        ops: usize,
        /// The limit ([`crate::kv::MAX_TXN_OPS`]).
        max: usize,
    },
    /// The store's own files or answers do not make sense.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// A local I/O error (files of the embedded store, lock files).
    #[error("store I/O: {0}")]
    Io(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the store is away or busy), as opposed to a
    /// request that is wrong in itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Refused(_) | StoreError::Io(_)
        )
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}
