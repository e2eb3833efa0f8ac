//! The embedded store: one SQLite database in WAL mode (through `rusqlite`, SQLite
//! bundled), shared by every gateway process on the host. SQLite's locking makes
//! writers of several processes take turns, and its write-ahead log makes each
//! transaction atomic and durable: a process killed with SIGKILL in the middle of a
//! write leaves the database as it was before or after that transaction, never
//! between (the next opener rolls the log back or forward). Watches poll a revision
//! counter from a background thread (`poller.rs`); leases are `flock`ed lock files
//! that the kernel releases when their process dies (`lease.rs`, which documents the mechanism).

mod lease;
mod poller;
mod sql;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::StoreError;
use crate::kv::{
    check_key, check_txn, Backend, Compare, Entry, LeaseId, Op, Revision, Store, TxnOutcome, Watch,
};
use lease::{boottime_ms, LockDir};
pub use sql::Synchronous;

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// How often watches look for new revisions (default 10 ms).
    pub poll_interval: Duration,
    /// How often leases of dead processes are looked for (default 50 ms).
    pub sweep_interval: Duration,
    /// Commit durability (default [`Synchronous::Normal`]).
    pub synchronous: Synchronous,
    /// How long an operation waits for another process's write (default 5 s).
    pub busy_timeout: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            poll_interval: Duration::from_millis(10),
            sweep_interval: Duration::from_millis(50),
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The embedded store (see the module documentation).
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    locks: LockDir,
    /// Lock files of the leases this store granted (held while the lease lives).
    held: Mutex<HashMap<i64, File>>,
    shared: Arc<poller::Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The database file for a configured path: a directory (existing, or named with
/// a trailing `/`) holds `store.sqlite`; anything else is the file itself.
pub fn database_path(path: &Path) -> PathBuf {
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        path.join("store.sqlite")
    } else {
        path.to_path_buf()
    }
}

impl EmbeddedStore {
    /// Open (creating if needed) the store at `path` (see [`database_path`]).
    pub fn open(path: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let path = database_path(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
                // Records are sealed, but the store is still nobody else's business.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        let mut conn = sql::connect(&path, opts.synchronous, opts.busy_timeout)?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        sql::init(&mut conn)?;
        let locks = LockDir::new(&path)?;
        let shared = Arc::new(poller::Shared::default());
        let (p, l, s) = (path.clone(), locks.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("store-poll".into())
            .spawn(move || poller::run(p, l, s, opts))?;
        Ok(EmbeddedStore {
            path,
            conn: Mutex::new(conn),
            locks,
            held: Mutex::new(HashMap::new()),
            shared,
            thread: Some(thread),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, id: i64) {
        let f = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if f.is_some() {
            self.locks.remove(id);
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Leases end with their holder: as if the process had exited.
        let ids: Vec<i64> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        for id in ids {
            let _ = sql::end_lease(&mut self.conn(), id);
            self.release(id);
        }
    }
}

impl Store for EmbeddedStore {
    fn backend(&self) -> Backend {
        Backend::Embedded
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        sql::get(&self.conn(), key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        sql::list(&self.conn(), prefix)
    }

    fn txn(&self, when: &[Compare], ops: &[Op]) -> Result<TxnOutcome, StoreError> {
        check_txn(when, ops)?;
        sql::txn(&mut self.conn(), when, ops, boottime_ms())
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        sql::revision(&self.conn())
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| StoreError::Io("the system RNG failed".into()))?;
        let id = (i64::from_be_bytes(b) & 0x3fff_ffff_ffff_ffff).max(1);
        let file = self.locks.create_held(id)?;
        let ttl_ms = ttl.as_millis().clamp(1, i64::MAX as u128) as i64;
        if let Err(e) = sql::grant(&self.conn(), id, ttl_ms, boottime_ms()) {
            self.locks.remove(id);
            return Err(e);
        }
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, file);
        Ok(LeaseId(id))
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        if sql::keep_alive(&self.conn(), lease.0, boottime_ms())? {
            return Ok(());
        }
        // Gone or past its deadline: make sure its keys are gone too.
        sql::end_lease(&mut self.conn(), lease.0)?;
        self.release(lease.0);
        Err(StoreError::LeaseExpired(lease))
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let existed = sql::end_lease(&mut self.conn(), lease.0)?;
        self.release(lease.0);
        if existed {
            Ok(())
        } else {
            Err(StoreError::LeaseExpired(lease))
        }
    }

    fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watch, StoreError> {
        let next = match from {
            Some(r) => r.max(1),
            None => self.revision()? + 1,
        };
        let (tx, rx) = channel();
        let alive = Arc::new(AtomicBool::new(true));
        self.shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(poller::Watcher {
                prefix: prefix.to_string(),
                next,
                tx,
                alive: alive.clone(),
            });
        Ok(Watch::new(rx, alive))
    }
}
