//! The shared store for recovery records (DESIGN.md flow 5).
//!
//! Every IKE SA and Child SA that the gateway establishes, rekeys or deletes is
//! written to (or removed from) the store at that moment, so that a backup gateway can
//! renegotiate it later. This wave ships the embedded store: one file per key in a
//! directory, written atomically (write to a temporary file, `fsync`, rename). The
//! etcd store of the next wave implements the same [`Store`] trait. Records never hold
//! secret keys: the backup renegotiates with its own copy of the site's credentials.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A key-value store of recovery records. Keys are `/`-separated paths.
pub trait Store: Send {
    /// Write `value` under `key`, replacing what was there.
    fn put(&mut self, key: &str, value: &[u8]) -> io::Result<()>;
    /// Read a key.
    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Remove a key (absent is fine).
    fn delete(&mut self, key: &str) -> io::Result<()>;
    /// All keys that start with `prefix`, sorted.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
}

/// The embedded store: a directory, one file per key.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Open (and create) the store directory.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir)?;
        // Records name peers, identities and SPIs: not for other local users.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if key.is_empty()
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad store key {key:?}"),
            ));
        }
        // One flat directory: '/' is encoded so that listing is a single readdir.
        Ok(self.dir.join(key.replace('%', "%25").replace('/', "%2F")))
    }
}

fn decode(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

impl Store for FileStore {
    fn put(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        let p = self.path(key)?;
        let tmp = p.with_extension("tmp~");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(value)?;
        f.sync_all()?;
        fs::rename(&tmp, &p)
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(key)?) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&mut self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name.ends_with("tmp~") {
                continue;
            }
            let k = decode(&name);
            if k.starts_with(prefix) {
                out.push(k);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Applies record changes to a [`Store`] and keeps those the store refused, to try
/// again later: a dead store loses no record, and when it comes back the latest
/// state of every key is written (a put superseded by a delete is never written).
pub struct RecordWriter {
    store: Box<dyn Store>,
    pending: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    failing: bool,
}

impl RecordWriter {
    /// Wrap a store.
    pub fn new(store: Box<dyn Store>) -> RecordWriter {
        RecordWriter {
            store,
            pending: Default::default(),
            failing: false,
        }
    }

    /// Record that `key` should now hold `value` (`None`: be absent).
    pub fn set(&mut self, key: String, value: Option<Vec<u8>>) {
        self.pending.insert(key, value);
    }

    /// Try to write everything pending; returns how many changes are still pending.
    pub fn flush(&mut self) -> usize {
        let mut failed = None;
        let keys: Vec<String> = self.pending.keys().cloned().collect();
        for k in keys {
            let r = match &self.pending[&k] {
                Some(v) => self.store.put(&k, v),
                None => self.store.delete(&k),
            };
            match r {
                Ok(()) => {
                    self.pending.remove(&k);
                }
                Err(e) => {
                    failed = Some((k, e));
                    break;
                }
            }
        }
        match failed {
            Some((k, e)) if !self.failing => {
                self.failing = true;
                tracing::error!(
                    "record store: writing {k} failed: {e}; {} change(s) kept and retried",
                    self.pending.len()
                );
            }
            None if self.failing => {
                self.failing = false;
                tracing::info!("record store: writable again, all pending records written");
            }
            _ => {}
        }
        self.pending.len()
    }

    /// Changes not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that fails while `down` is set.
    struct Flaky {
        inner: FileStore,
        down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Store for Flaky {
        fn put(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::other("store is down"));
            }
            self.inner.put(key, value)
        }
        fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn delete(&mut self, key: &str) -> io::Result<()> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::other("store is down"));
            }
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
            self.inner.list(prefix)
        }
    }

    #[test]
    fn a_dead_store_loses_no_record() {
        let d = std::env::temp_dir().join(format!("pg-store-flaky-{}", std::process::id()));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut w = RecordWriter::new(Box::new(Flaky {
            inner: FileStore::open(&d).unwrap(),
            down: down.clone(),
        }));
        w.set("s/ike/1".into(), Some(b"one".to_vec()));
        w.set("s/child/2".into(), Some(b"two".to_vec()));
        w.set("s/child/3".into(), Some(b"three".to_vec()));
        w.set("s/child/3".into(), None); // deleted before it was ever written
        assert_eq!(w.flush(), 3, "nothing written while the store is down");
        assert_eq!(w.flush(), 3);
        down.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(w.flush(), 0);
        let check = FileStore::open(&d).unwrap();
        assert_eq!(check.list("s/").unwrap(), vec!["s/child/2", "s/ike/1"]);
        assert_eq!(check.get("s/ike/1").unwrap().as_deref(), Some(&b"one"[..]));
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn put_get_list_delete() {
        let d = std::env::temp_dir().join(format!("pg-store-{}", std::process::id()));
        let mut s = FileStore::open(&d).unwrap();
        s.put("site-a/ike/0011", b"one").unwrap();
        s.put("site-a/child/22", b"two").unwrap();
        s.put("site-b/ike/33", b"three").unwrap();
        assert_eq!(
            s.get("site-a/ike/0011").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            s.list("site-a/").unwrap(),
            vec!["site-a/child/22", "site-a/ike/0011"]
        );
        s.delete("site-a/ike/0011").unwrap();
        s.delete("site-a/ike/0011").unwrap();
        assert_eq!(s.get("site-a/ike/0011").unwrap(), None);
        assert!(s.put("../evil", b"x").is_err());
        let _ = fs::remove_dir_all(d);
    }
}
