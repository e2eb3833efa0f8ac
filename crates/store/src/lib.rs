//! # plexgate-store — the shared store
//!
//! Where a site's gateways keep what a backup needs to take over (DESIGN.md flows
//! 5-7): sealed recovery records of every IKE SA and Child SA, each gateway's lease
//! and heartbeat, and per DVIPA who routes it now (owner and epoch) and the
//! configured ranks. `docs/store.md` describes the schema, the key layout, sealing,
//! the backends, the fencing inequality and what happens when the store is down.
//!
//! - [`kv`]: the [`Store`] trait (get/list/txn with compares, leases, watches);
//! - backends: [`memory`] (virtual time, fault injection, for the cluster harness),
//!   [`embedded`] (SQLite in WAL mode, several processes on one host, leases as
//!   `flock`ed files) and [`etcd`] (etcd v3 through `etcd-client`);
//! - [`seal`] (AES-256-GCM keyring, blinded key names), [`keys`] (the key layout),
//!   [`records`] (the record shapes and their sealing);
//! - [`liveness`] (sans-IO: heartbeat monitor and self-fencing deadline) and
//!   [`ownership`] (gateway membership, heartbeats, DVIPA claims with epochs);
//! - [`writer`]: the record writer that never blocks the data path and keeps
//!   changes while the store is away.
#![warn(missing_docs, unreachable_pub)]

pub mod embedded;
pub mod error;
pub mod etcd;
pub mod etcd_server;
pub mod keys;
pub mod kv;
pub mod liveness;
pub mod memory;
pub mod open;
pub mod ownership;
pub mod records;
pub mod seal;
pub mod writer;

pub use error::StoreError;
pub use keys::{IkeSpis, Keys};
pub use kv::{
    Backend, CasOutcome, Compare, Entry, Expect, LeaseId, Op, Revision, Store, TxnOutcome, Watch,
    WatchEvent, MAX_TXN_OPS,
};
pub use open::{open, StoreConfig};
pub use records::{ChildRecord, IkeRecord, Record, RecordBook, SCHEMA_VERSION};
pub use seal::{KeyId, Keyring, SealCounters, SealError, StoreKey};
pub use writer::{RecordWriter, WriterConfig, WriterStatus};
