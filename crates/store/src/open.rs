//! Choosing a backend: the daemon maps the policy's `[ha.store]` onto a
//! [`StoreConfig`] and opens it as one `Arc<dyn Store>` for every thread.

use std::path::PathBuf;
use std::sync::Arc;

use crate::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::error::StoreError;
use crate::etcd::{EtcdOptions, EtcdStore};
use crate::kv::Store;
use crate::memory::MemoryStore;

/// Which store to open.
#[derive(Clone)]
pub enum StoreConfig {
    /// A client of an in-memory world (tests, the cluster harness).
    Memory(MemoryStore),
    /// The embedded store at this path (a file, or a directory for `store.sqlite`).
    Embedded {
        /// The path.
        path: PathBuf,
        /// Settings.
        options: EmbeddedOptions,
    },
    /// etcd.
    Etcd {
        /// Client URLs (`http://10.0.0.50:2379`).
        endpoints: Vec<String>,
        /// Settings.
        options: EtcdOptions,
    },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Memory(_) => f.write_str("Memory"),
            StoreConfig::Embedded { path, .. } => write!(f, "Embedded({})", path.display()),
            StoreConfig::Etcd { endpoints, .. } => write!(f, "Etcd({endpoints:?})"),
        }
    }
}

/// Open the configured store.
pub fn open(cfg: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match cfg {
        StoreConfig::Memory(m) => Arc::new(m.clone()),
        StoreConfig::Embedded { path, options } => Arc::new(EmbeddedStore::open(path, *options)?),
        StoreConfig::Etcd { endpoints, options } => {
            Arc::new(EtcdStore::connect(endpoints, *options)?)
        }
    })
}
