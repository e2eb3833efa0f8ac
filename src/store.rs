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

#[cfg(test)]
mod tests {
    use super::*;

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
