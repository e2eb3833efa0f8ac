//! The embedded store's tables and the SQL of each operation. One database file in
//! WAL mode; keys are BLOBs (bytewise order, so a prefix is a range) in a unique
//! index beside rowid tables (values of sealed records are ~700 bytes: in a
//! key-ordered table a random key would rewrite a large leaf page; here it only
//! touches a small index page, and rows are appended); every
//! transaction that changes something takes the next revision from `meta` and
//! appends its changes to `events`, which watchers read and which is trimmed to the
//! last [`KEEP_REVISIONS`] revisions.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::StoreError;
use crate::kv::{
    prefix_end, Compare, Entry, Expect, LeaseId, Op, Revision, TxnOutcome, WatchEvent,
};

/// Revisions of history kept for watchers that fall behind.
pub(super) const KEEP_REVISIONS: u64 = 4096;
/// Trim the history every this many revisions (a power of two).
const TRIM_EVERY: u64 = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0), ('format', 2);
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, value BLOB NOT NULL,
    created INTEGER NOT NULL, revision INTEGER NOT NULL, lease INTEGER);
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, revision INTEGER NOT NULL, key BLOB NOT NULL, value BLOB,
    created INTEGER, lease INTEGER);
CREATE INDEX IF NOT EXISTS events_revision ON events(revision);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL,
    pid INTEGER NOT NULL);
";

/// Map SQLite's errors onto the store's.
pub(super) fn err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked => {
                StoreError::Unavailable(format!("embedded store busy: {e}"))
            }
            C::DiskFull | C::ReadOnly | C::PermissionDenied => StoreError::Refused(e.to_string()),
            C::CannotOpen => StoreError::Unavailable(e.to_string()),
            C::NotADatabase | C::DatabaseCorrupt => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Io(e.to_string()),
        },
        _ => StoreError::Io(e.to_string()),
    }
}

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL with `synchronous=NORMAL`: a commit survives the death of any process
    /// (SIGKILL included); the last commits may roll back if the *host* loses power,
    /// which also kills every gateway using this store. The default.
    #[default]
    Normal,
    /// `synchronous=FULL`: the WAL is fsynced at every commit (survives power loss).
    Full,
}

/// Open a connection with the store's settings.
pub(super) fn connect(
    path: &std::path::Path,
    sync: Synchronous,
    busy: std::time::Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(busy).map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    let s = match sync {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // A 64 MB page cache: 100,000 SAs are ~150 MB of records and history.
    conn.execute_batch(&format!(
        "PRAGMA synchronous={s}; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536;"
    ))
    .map_err(err)?;
    Ok(conn)
}

/// Create the tables if missing.
pub(super) fn init(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(SCHEMA).map_err(err)?;
    let format: i64 = tx
        .query_row("SELECT value FROM meta WHERE name='format'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    if format != 2 {
        return Err(StoreError::Corrupt(format!(
            "store format {format}, this build reads 2"
        )));
    }
    tx.commit().map_err(err)
}

/// key, value, created, revision, lease.
type KvRow = (Vec<u8>, Vec<u8>, i64, i64, Option<i64>);

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<KvRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_entry((k, value, created, revision, lease): KvRow) -> Result<Entry, StoreError> {
    Ok(Entry {
        key: String::from_utf8(k).map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?,
        value,
        revision: revision as Revision,
        created: created as Revision,
        lease: lease.map(LeaseId),
    })
}

/// One key.
pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<Entry>, StoreError> {
    conn.prepare_cached("SELECT key, value, created, revision, lease FROM kv WHERE key = ?1")
        .and_then(|mut s| s.query_row([key.as_bytes()], entry).optional())
        .map_err(err)?
        .map(to_entry)
        .transpose()
}

/// Every key under `prefix` (one statement: one snapshot).
pub(super) fn list(conn: &Connection, prefix: &str) -> Result<Vec<Entry>, StoreError> {
    let rows = match prefix_end(prefix.as_bytes()) {
        Some(end) => conn
            .prepare_cached("SELECT key, value, created, revision, lease FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")
            .and_then(|mut s| s.query_map(params![prefix.as_bytes(), end], entry)?.collect::<Result<Vec<_>, _>>()),
        None => conn
            .prepare_cached("SELECT key, value, created, revision, lease FROM kv WHERE key >= ?1 ORDER BY key")
            .and_then(|mut s| s.query_map([prefix.as_bytes()], entry)?.collect::<Result<Vec<_>, _>>()),
    }
    .map_err(err)?;
    rows.into_iter().map(to_entry).collect()
}

fn meta(conn: &Connection, name: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)))
        .map(|v| v as u64)
        .map_err(err)
}

/// The current revision.
pub(super) fn revision(conn: &Connection) -> Result<Revision, StoreError> {
    meta(conn, "revision")
}

/// Events up to this revision have been trimmed.
pub(super) fn compacted(conn: &Connection) -> Result<Revision, StoreError> {
    meta(conn, "compacted")
}

fn holds(tx: &Connection, c: &Compare) -> Result<bool, StoreError> {
    let cur: Option<i64> = tx
        .prepare_cached("SELECT revision FROM kv WHERE key = ?1")
        .and_then(|mut s| s.query_row([c.key.as_bytes()], |r| r.get(0)).optional())
        .map_err(err)?;
    Ok(match c.expect {
        Expect::Absent => cur.is_none(),
        Expect::At(r) => cur == Some(r as i64),
    })
}

fn lease_live(tx: &Connection, id: i64, now_ms: i64) -> Result<bool, StoreError> {
    tx.prepare_cached("SELECT 1 FROM leases WHERE id = ?1 AND deadline_ms > ?2")
        .and_then(|mut s| s.exists(params![id, now_ms]))
        .map_err(err)
}

/// A guarded transaction: BEGIN IMMEDIATE, compares, lease checks, writes, commit.
pub(super) fn txn(
    conn: &mut Connection,
    when: &[Compare],
    ops: &[Op],
    now_ms: i64,
) -> Result<TxnOutcome, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    for c in when {
        if !holds(&tx, c)? {
            return Ok(TxnOutcome::Conflict);
        }
    }
    for op in ops {
        if let Op::Put { lease: Some(l), .. } = op {
            if !lease_live(&tx, l.0, now_ms)? {
                return Err(StoreError::LeaseExpired(*l));
            }
        }
    }
    let rev = apply(&tx, ops)?;
    tx.commit().map_err(err)?;
    Ok(TxnOutcome::Committed(rev))
}

/// Apply `ops` at the next revision inside an open transaction; returns the revision
/// afterwards (unchanged if nothing changed).
fn apply(tx: &Connection, ops: &[Op]) -> Result<Revision, StoreError> {
    let cur = revision(tx)?;
    let rev = (cur + 1) as i64;
    let mut changed_any = false;
    for op in ops {
        let changed = match op {
            Op::Put { key, value, lease } => {
                let created: i64 = tx
                    .prepare_cached(
                        "INSERT INTO kv (key, value, created, revision, lease) VALUES (?1, ?2, ?3, ?3, ?4)
                         ON CONFLICT(key) DO UPDATE SET value = ?2, revision = ?3, lease = ?4
                         RETURNING created",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![key.as_bytes(), value, rev, lease.map(|l| l.0)], |r| r.get(0))
                    })
                    .map_err(err)?;
                log(tx, rev, key, Some((value, created, lease.map(|l| l.0))))?;
                true
            }
            Op::Delete { key } => {
                let n = tx
                    .prepare_cached("DELETE FROM kv WHERE key = ?1")
                    .and_then(|mut s| s.execute([key.as_bytes()]))
                    .map_err(err)?;
                if n > 0 {
                    log(tx, rev, key, None)?;
                }
                n > 0
            }
        };
        changed_any |= changed;
    }
    if !changed_any {
        return Ok(cur);
    }
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
        .and_then(|mut s| s.execute([rev]))
        .map_err(err)?;
    if (rev as u64) & (TRIM_EVERY - 1) == 0 && rev as u64 > KEEP_REVISIONS {
        let upto = rev - KEEP_REVISIONS as i64;
        tx.execute("DELETE FROM events WHERE revision <= ?1", [upto])
            .map_err(err)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [upto],
        )
        .map_err(err)?;
    }
    Ok(rev as Revision)
}

fn log(
    tx: &Connection,
    rev: i64,
    key: &str,
    put: Option<(&Vec<u8>, i64, Option<i64>)>,
) -> Result<(), StoreError> {
    let (value, created, lease) = match put {
        Some((v, c, l)) => (Some(v), Some(c), l),
        None => (None, None, None),
    };
    tx.prepare_cached(
        "INSERT INTO events (revision, key, value, created, lease) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![rev, key.as_bytes(), value, created, lease]))
    .map_err(err)?;
    Ok(())
}

/// Events of revisions `from..=to`, in order.
pub(super) fn events(
    conn: &Connection,
    from: Revision,
    to: Revision,
) -> Result<Vec<WatchEvent>, StoreError> {
    type Row = (i64, Vec<u8>, Option<Vec<u8>>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT revision, key, value, created, lease FROM events
             WHERE revision >= ?1 AND revision <= ?2 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![from as i64, to as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(err)?;
    rows.into_iter()
        .map(|(rev, k, value, created, lease)| {
            let key = String::from_utf8(k)
                .map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?;
            Ok(match value {
                Some(value) => WatchEvent::Put(Entry {
                    key,
                    value,
                    revision: rev as Revision,
                    created: created.unwrap_or(rev) as Revision,
                    lease: lease.map(LeaseId),
                }),
                None => WatchEvent::Delete {
                    key,
                    revision: rev as Revision,
                },
            })
        })
        .collect()
}

/// Record a lease.
pub(super) fn grant(
    conn: &Connection,
    id: i64,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO leases (id, ttl_ms, deadline_ms, pid) VALUES (?1, ?2, ?3, ?4)",
        params![id, ttl_ms, now_ms + ttl_ms, std::process::id()],
    )
    .map_err(err)?;
    Ok(())
}

/// Push a live lease's deadline; false if it is gone or past its deadline.
pub(super) fn keep_alive(conn: &Connection, id: i64, now_ms: i64) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE leases SET deadline_ms = ?2 + ttl_ms WHERE id = ?1 AND deadline_ms > ?2",
            params![id, now_ms],
        )
        .map_err(err)?;
    Ok(n > 0)
}

/// Every lease with its deadline.
pub(super) fn leases(conn: &Connection) -> Result<Vec<(i64, i64)>, StoreError> {
    conn.prepare_cached("SELECT id, deadline_ms FROM leases")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(err)
}

/// End a lease: delete its keys (at one revision) and its row. False if it was
/// already gone.
pub(super) fn end_lease(conn: &mut Connection, id: i64) -> Result<bool, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let n = tx
        .execute("DELETE FROM leases WHERE id = ?1", [id])
        .map_err(err)?;
    if n == 0 {
        return Ok(false);
    }
    let keys: Vec<Vec<u8>> = tx
        .prepare_cached("SELECT key FROM kv WHERE lease = ?1")
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .map_err(err)?;
    let mut ops = Vec::with_capacity(keys.len());
    for k in keys {
        let key =
            String::from_utf8(k).map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?;
        ops.push(Op::Delete { key });
    }
    apply(&tx, &ops)?;
    tx.commit().map_err(err)?;
    Ok(true)
}
