//! The [`Store`] trait: a revisioned key-value store with prefix listing,
//! transactions guarded by compares (compare-and-swap), leases and prefix watches —
//! the subset of etcd's v3 model that recovery records and gateway ownership need,
//! which the in-memory ([`crate::memory`]), embedded ([`crate::embedded`]) and etcd
//! ([`crate::etcd`]) backends all implement with the same meaning.
//!
//! Every change bumps one store-wide *revision*; each entry remembers the revision
//! that last modified it ([`Entry::revision`]). A compare names the revision the
//! caller saw (or that the key is absent), so a write made on stale knowledge fails
//! instead of overwriting: that is how ownership of a DVIPA changes hands, and the
//! revision of the winning write is the owner's *epoch* (fencing token). The API is
//! blocking and `&self`, so that the gateway's plain std threads share one store
//! through an `Arc<dyn Store>`; watches deliver events through a channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;

/// A store-wide revision: it grows by one with every transaction that changes
/// something. 0 means "never written".
pub type Revision = u64;

/// The most operations one transaction may carry, in every backend (etcd's default
/// `--max-txn-ops`). The record writer splits larger batches.
pub const MAX_TXN_OPS: usize = 128;

/// The longest key the store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// A lease: keys attached to it disappear when it ends (revoked, not kept alive, or
/// on the embedded store its owning process dies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Which backend a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// [`crate::memory::MemoryStore`].
    Memory,
    /// [`crate::embedded::EmbeddedStore`].
    Embedded,
    /// [`crate::etcd::EtcdStore`].
    Etcd,
}

impl Backend {
    /// `memory`, `embedded` or `etcd`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value (sealed bytes for everything plexgate writes).
    pub value: Vec<u8>,
    /// The revision that last modified this key (etcd's `mod_revision`).
    pub revision: Revision,
    /// The revision that created this key (etcd's `create_revision`).
    pub created: Revision,
    /// The lease the key is attached to.
    pub lease: Option<LeaseId>,
}

/// What a compare expects of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists and was last modified at this revision.
    At(Revision),
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// What it must be.
    pub expect: Expect,
}

impl Compare {
    /// `key` must be absent.
    pub fn absent(key: impl Into<String>) -> Compare {
        Compare {
            key: key.into(),
            expect: Expect::Absent,
        }
    }

    /// `key` must have been last modified at `rev`.
    pub fn at(key: impl Into<String>, rev: Revision) -> Compare {
        Compare {
            key: key.into(),
            expect: Expect::At(rev),
        }
    }

    /// `key` must be as `seen` (absent if `None`, else at that entry's revision).
    pub fn seen(key: impl Into<String>, seen: Option<Revision>) -> Compare {
        Compare {
            key: key.into(),
            expect: seen.map_or(Expect::Absent, Expect::At),
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`, attached to `lease` if given.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Attach to this lease (the key vanishes with it).
        lease: Option<LeaseId>,
    },
    /// Remove `key` (absent is fine).
    Delete {
        /// The key.
        key: String,
    },
}

impl Op {
    /// The key this operation writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// How a guarded transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held and the writes were applied at this revision (the
    /// current revision if they changed nothing).
    Committed(Revision),
    /// A compare failed; nothing was written.
    Conflict,
}

/// How a compare-and-swap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the key's new revision (the epoch of an ownership).
    Swapped(Revision),
    /// The key was not as expected; what it is now (`None`: absent).
    Conflict(Option<Entry>),
}

/// A change seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written.
    Put(Entry),
    /// A key was removed (deleted, or its lease ended).
    Delete {
        /// The key.
        key: String,
        /// The revision of the removal.
        revision: Revision,
    },
    /// Events may have been lost (history compacted while the watcher was behind):
    /// list the prefix again. `revision` is the store's revision at that moment.
    Resync {
        /// The store revision when the watch resumed.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision of the event.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(e) => e.revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Resync { revision } => *revision,
        }
    }

    /// The key of a put or delete.
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put(e) => Some(&e.key),
            WatchEvent::Delete { key, .. } => Some(key),
            WatchEvent::Resync { .. } => None,
        }
    }
}

/// The receiving end of a prefix watch: events in revision order. Dropping it
/// cancels the watch.
#[derive(Debug)]
pub struct Watch {
    rx: Receiver<WatchEvent>,
    alive: Arc<AtomicBool>,
}

impl Watch {
    /// A watch fed through `rx`; the backend stops feeding once `alive` is false
    /// (set when the watch is dropped).
    pub(crate) fn new(rx: Receiver<WatchEvent>, alive: Arc<AtomicBool>) -> Watch {
        Watch { rx, alive }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<WatchEvent> {
        self.rx.try_recv().ok()
    }

    /// Wait up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every event waiting now.
    pub fn drain(&self) -> Vec<WatchEvent> {
        self.rx.try_iter().collect()
    }

    /// Whether the backend has stopped feeding this watch (the store was closed).
    pub fn is_closed(&self) -> bool {
        matches!(self.rx.try_recv(), Err(TryRecvError::Disconnected))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// A revisioned key-value store shared by the gateways of a site. Blocking, `&self`:
/// share it between threads as `Arc<dyn Store>`.
pub trait Store: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Read one key.
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Every key that starts with `prefix`, sorted by key (bytewise), read at one
    /// revision.
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;

    /// If every compare in `when` holds, apply `ops` atomically (all or none) at one
    /// new revision. At most [`MAX_TXN_OPS`] operations; a key may appear in only one
    /// operation. A put attached to an unknown lease fails with
    /// [`StoreError::LeaseExpired`].
    fn txn(&self, when: &[Compare], ops: &[Op]) -> Result<TxnOutcome, StoreError>;

    /// The current revision of the store.
    fn revision(&self) -> Result<Revision, StoreError>;

    /// Grant a lease that ends `ttl` after its last keep-alive (etcd rounds up to
    /// whole seconds and raises small TTLs to its floor, about 2 s).
    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renew a lease for another TTL; [`StoreError::LeaseExpired`] if it has ended.
    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// End a lease now: its keys are deleted.
    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Watch every key under `prefix`: events from revision `from` on (`None`: only
    /// changes after this call returns).
    fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watch, StoreError>;

    /// Write one key; returns the revision of the write.
    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision, StoreError> {
        let op = Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        committed(self.txn(&[], &[op])?)
    }

    /// Remove one key (absent is fine); returns the store revision afterwards.
    fn delete(&self, key: &str) -> Result<Revision, StoreError> {
        committed(self.txn(
            &[],
            &[Op::Delete {
                key: key.to_string(),
            }],
        )?)
    }

    /// Apply several writes in one transaction.
    fn batch(&self, ops: &[Op]) -> Result<Revision, StoreError> {
        committed(self.txn(&[], ops)?)
    }

    /// Write `key` only if it is as `expect`ed; returns its new revision, or what it
    /// is now.
    fn compare_and_swap(
        &self,
        key: &str,
        expect: Expect,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome, StoreError> {
        let when = [Compare {
            key: key.to_string(),
            expect,
        }];
        let op = Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
        };
        match self.txn(&when, &[op])? {
            TxnOutcome::Committed(rev) => Ok(CasOutcome::Swapped(rev)),
            TxnOutcome::Conflict => Ok(CasOutcome::Conflict(self.get(key)?)),
        }
    }
}

fn committed(o: TxnOutcome) -> Result<Revision, StoreError> {
    match o {
        TxnOutcome::Committed(r) => Ok(r),
        // No compares: a backend that reports a conflict is broken.
        TxnOutcome::Conflict => Err(StoreError::Corrupt(
            "an unconditional transaction reported a conflict".into(),
        )),
    }
}

/// Checks common to every backend: key shape, operation count, one op per key.
pub(crate) fn check_txn(when: &[Compare], ops: &[Op]) -> Result<(), StoreError> {
    if ops.len() > MAX_TXN_OPS {
        return Err(StoreError::TooLarge {
            ops: ops.len(),
            max: MAX_TXN_OPS,
        });
    }
    for c in when {
        check_key(&c.key)?;
    }
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        check_key(op.key())?;
        if !seen.insert(op.key()) {
            return Err(StoreError::BadKey {
                key: op.key().to_string(),
                why: "written twice in one transaction",
            });
        }
    }
    Ok(())
}

/// A key must be non-empty, at most [`MAX_KEY_LEN`] bytes, without NUL.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let why = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 512 bytes"
    } else if key.contains('\0') {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(StoreError::BadKey {
        key: key.chars().take(80).collect(),
        why,
    })
}

/// The first key after every key that starts with `prefix` (etcd's range end), or
/// `None` if there is none (empty prefix or all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"a/b"), Some(b"a/c".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn transactions_are_checked_before_any_backend_sees_them() {
        let put = |k: &str| Op::Put {
            key: k.into(),
            value: vec![],
            lease: None,
        };
        assert!(check_txn(&[], &[put("a"), put("b")]).is_ok());
        assert!(matches!(
            check_txn(&[], &[put("a"), Op::Delete { key: "a".into() }]),
            Err(StoreError::BadKey { .. })
        ));
        assert!(matches!(
            check_txn(&[], &[put("")]),
            Err(StoreError::BadKey { .. })
        ));
        let many: Vec<Op> = (0..=MAX_TXN_OPS).map(|i| put(&format!("k{i}"))).collect();
        assert!(matches!(
            check_txn(&[], &many),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(check_key(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
