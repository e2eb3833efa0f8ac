//! Per-run scratch directories.
//!
//! Each strongSwan peer and traffic tool of the lab writes its configs and logs
//! into a fresh directory under `$PLEXGATE_LAB_DIR` (default
//! `/tmp/plexgate-lab`). The directory is removed on drop, except when the thread
//! is panicking (a failing test) or `PLEXGATE_LAB_KEEP=1` is set: then it is kept
//! and its path printed so the logs can be read.

use crate::error::{LabError, Result};
use crate::netns::unique_token;
use std::path::{Path, PathBuf};

/// A scratch directory removed on drop (kept on panic or with `PLEXGATE_LAB_KEEP=1`).
#[derive(Debug)]
pub struct LabDir {
    path: PathBuf,
}

/// The base directory for lab scratch directories.
pub fn base_dir() -> PathBuf {
    std::env::var_os("PLEXGATE_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/plexgate-lab"))
}

fn keep_requested() -> bool {
    std::env::var("PLEXGATE_LAB_KEEP").is_ok_and(|v| v == "1")
}

impl LabDir {
    /// Create `<base>/<pid>-<n>-<random>-<label>`.
    pub fn new(label: &str) -> Result<LabDir> {
        let path = base_dir().join(format!("{}-{label}", unique_token()));
        std::fs::create_dir_all(&path)
            .map_err(|e| LabError::io(format!("creating {}", path.display()), e))?;
        let s = path.to_string_lossy();
        if s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '{' || c == '}')
        {
            return Err(LabError::Config(format!(
                "lab directory `{s}` must not contain spaces, quotes or braces"
            )));
        }
        Ok(LabDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        if std::thread::panicking() || keep_requested() {
            eprintln!("plexgate-lab: kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
