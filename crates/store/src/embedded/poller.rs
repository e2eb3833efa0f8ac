//! The embedded store's background thread, one per open store: it feeds the watches
//! (polling the revision counter every `poll_interval` and reading new events from
//! the `events` table) and sweeps the leases of dead processes every
//! `sweep_interval` (see [`super::lease`]). It has its own database connection, so
//! the caller's operations never wait for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::Connection;

use super::lease::{boottime_ms, LockDir, Probe};
use super::{sql, EmbeddedOptions};
use crate::error::StoreError;
use crate::kv::{Revision, WatchEvent};

/// Revisions read per poll at most (bounds the memory of one read).
const REVISIONS_PER_POLL: u64 = 1024;

/// A registered watch.
pub(super) struct Watcher {
    pub(super) prefix: String,
    /// The first revision not yet delivered.
    pub(super) next: Revision,
    pub(super) tx: Sender<WatchEvent>,
    pub(super) alive: Arc<AtomicBool>,
}

/// What the store and its thread share.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) watchers: Mutex<Vec<Watcher>>,
    pub(super) stop: AtomicBool,
}

/// The thread's loop.
pub(super) fn run(
    path: std::path::PathBuf,
    locks: LockDir,
    shared: Arc<Shared>,
    opts: EmbeddedOptions,
) {
    let mut conn: Option<Connection> = None;
    let mut last_sweep = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(opts.poll_interval);
        if conn.is_none() {
            conn = sql::connect(&path, opts.synchronous, opts.busy_timeout).ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut ok = true;
        if last_sweep.elapsed() >= opts.sweep_interval {
            last_sweep = Instant::now();
            if let Err(e) = sweep(c, &locks) {
                tracing::debug!("embedded store: lease sweep failed: {e}");
                ok = false;
            }
        }
        if let Err(e) = feed(c, &shared) {
            tracing::debug!("embedded store: watch poll failed: {e}");
            ok = false;
        }
        if !ok {
            conn = None;
        }
    }
}

/// Deliver new events to every live watcher.
fn feed(conn: &Connection, shared: &Shared) -> Result<(), StoreError> {
    let mut ws = shared.watchers.lock().unwrap_or_else(|p| p.into_inner());
    ws.retain(|w| w.alive.load(Ordering::Relaxed));
    let Some(from) = ws.iter().map(|w| w.next).min() else {
        return Ok(());
    };
    let rev = sql::revision(conn)?;
    if rev < from {
        return Ok(());
    }
    let compacted = sql::compacted(conn)?;
    let to = rev.min(from + REVISIONS_PER_POLL - 1);
    let events = sql::events(conn, from.max(compacted + 1), to)?;
    ws.retain_mut(|w| {
        if w.next > to {
            return true;
        }
        if w.next <= compacted {
            // History this watcher still needed has been trimmed.
            w.next = rev + 1;
            return w.tx.send(WatchEvent::Resync { revision: rev }).is_ok();
        }
        let mine = events
            .iter()
            .filter(|e| e.revision() >= w.next)
            .filter(|e| e.key().is_some_and(|k| k.starts_with(&w.prefix)));
        for e in mine {
            if w.tx.send(e.clone()).is_err() {
                return false;
            }
        }
        w.next = to + 1;
        true
    });
    Ok(())
}

/// End the leases whose process is gone (lock free or file missing) or whose
/// deadline has passed.
fn sweep(conn: &mut Connection, locks: &LockDir) -> Result<(), StoreError> {
    let now = boottime_ms();
    for (id, deadline) in sql::leases(conn)? {
        match locks.probe(id)? {
            Probe::Free(lock) => {
                if sql::end_lease(conn, id)? {
                    tracing::info!("embedded store: lease {id:x} ended (its process is gone)");
                }
                locks.remove(id);
                drop(lock);
            }
            Probe::Missing => {
                sql::end_lease(conn, id)?;
            }
            Probe::Held if deadline <= now => {
                if sql::end_lease(conn, id)? {
                    tracing::info!("embedded store: lease {id:x} expired (not kept alive)");
                }
            }
            Probe::Held => {}
        }
    }
    Ok(())
}
