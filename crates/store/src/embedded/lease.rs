//! Leases of the embedded store that end when their process ends, however it ends.
//!
//! A lease is a row in the `leases` table *and* a lock file
//! `<store>.leases/<id>.lock` on which the owning process holds an exclusive
//! `flock(2)` for as long as the lease lives. The kernel drops the lock when the last
//! descriptor of the file closes, i.e. when the process exits, is killed (SIGKILL
//! included) or crashes. Every process that has the store open sweeps the leases a
//! few times a second: a lease whose lock it can take (or whose file is gone) has
//! lost its process and is ended — its keys are deleted in one transaction, which
//! watchers see at once. A lease whose process lives but has stopped keeping it
//! alive (hung, stopped) ends at its deadline, on `CLOCK_BOOTTIME`, which every
//! process of the host shares.
//!
//! Order makes it race-free: the owner takes the lock *before* inserting the row, and
//! deletes the row *before* it unlinks the file and closes the descriptor; a sweeper
//! only probes leases that have a row, and ending a lease whose row is gone is a
//! no-op. Lock files are opened close-on-exec, so a child the gateway spawns does
//! not inherit (and keep alive) its lease.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Milliseconds on `CLOCK_BOOTTIME` (monotonic, host-wide, counts suspend).
pub(super) fn boottime_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // Cannot fail for CLOCK_BOOTTIME on Linux; fall back to the monotonic clock.
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    }
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

/// What a probe of a lease's lock found.
pub(super) enum Probe {
    /// A live process holds it.
    Held,
    /// Nobody held it: we hold it now (its process is gone).
    Free(File),
    /// The lock file does not exist.
    Missing,
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The directory of lock files next to the database.
#[derive(Debug, Clone)]
pub(super) struct LockDir {
    dir: PathBuf,
}

impl LockDir {
    /// `<db>.leases/`, created with mode 0700.
    pub(super) fn new(db: &Path) -> io::Result<LockDir> {
        use std::os::unix::fs::PermissionsExt;
        let mut name = db.as_os_str().to_owned();
        name.push(".leases");
        let dir = PathBuf::from(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(LockDir { dir })
    }

    fn path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id:016x}.lock"))
    }

    /// Create the lock file of a new lease and lock it (before its row exists).
    pub(super) fn create_held(&self, id: i64) -> io::Result<File> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(id))?;
        flock(&f, libc::LOCK_EX | libc::LOCK_NB)?;
        // For operators: which process holds it.
        let _ = writeln!(f, "{}", std::process::id());
        Ok(f)
    }

    /// Whether the lease's process still holds its lock.
    pub(super) fn probe(&self, id: i64) -> io::Result<Probe> {
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.path(id))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::Missing),
            Err(e) => return Err(e),
        };
        match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Probe::Free(f)),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(Probe::Held),
            Err(e) => Err(e),
        }
    }

    /// Remove a lease's lock file (after its row is gone).
    pub(super) fn remove(&self, id: i64) {
        let _ = std::fs::remove_file(self.path(id));
    }
}
