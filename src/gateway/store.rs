//! The shared store as the daemon opens it from the policy's `[ha.store]`: the
//! backend (embedded SQLite or etcd, `plexgate_store::open`), the keyring that
//! seals records (`key_file`, `key_id`, `old_keys`), the site's key layout, and the
//! record writer that applies the core's [`RecordChange`]s without ever blocking
//! the data path.

use std::sync::Arc;
use std::time::SystemTime;

use plexgate_policy as policy;
use plexgate_store as store;

use super::core::RecordChange;

type BoxError = Box<dyn std::error::Error>;

/// The store of a site, opened.
pub struct SiteStore {
    /// The backend.
    pub store: Arc<dyn store::Store>,
    /// The key layout (with the keyring).
    pub keys: store::Keys,
    /// The record writer.
    pub writer: store::RecordWriter,
    /// The site's gateways (`[ha] name` and peers), to name lease holders.
    pub gateways: Vec<String>,
}

/// The key prefix of a site's records.
pub fn prefix(p: &policy::Policy) -> String {
    match p.ha.as_ref().map(|h| &h.store) {
        Some(policy::Store::Etcd { prefix, .. }) => prefix.clone(),
        _ => format!("/plexgate/{}/", p.site.name),
    }
}

/// The keyring of `[ha.store]`: seals with `key_id`, opens with it and every
/// `old_keys` entry. Key names are blinded with the key of the smallest id in
/// the ring, so that they stay the same when the site rotates its sealing key
/// (every gateway of a site has the same ring).
pub fn keyring(p: &policy::Policy, keys: &policy::StoreKeys) -> Result<store::Keyring, BoxError> {
    let read = |f: &std::path::Path| {
        store::StoreKey::read_file(f).map_err(|e| format!("store key {}: {e}", f.display()))
    };
    let mut ring = vec![(store::KeyId(u32::from(keys.key_id)), read(&keys.key_file)?)];
    for k in &keys.old_keys {
        ring.push((store::KeyId(u32::from(k.id)), read(&k.file)?));
    }
    let names = ring
        .iter()
        .map(|(id, _)| *id)
        .min()
        .unwrap_or(store::KeyId(1));
    let ring = store::Keyring::new(&p.site.name, store::KeyId(u32::from(keys.key_id)), ring)
        .map_err(|e| format!("store keyring: {e}"))?
        .with_names_key(names)
        .map_err(|e| format!("store keyring: {e}"))?;
    Ok(ring)
}

/// How to reach the policy's store.
pub fn config(p: &policy::Policy) -> Option<store::StoreConfig> {
    match &p.ha.as_ref()?.store {
        policy::Store::Embedded { path } => Some(store::StoreConfig::Embedded {
            path: path.clone(),
            options: Default::default(),
        }),
        policy::Store::Etcd { endpoints, .. } => Some(store::StoreConfig::Etcd {
            endpoints: endpoints.clone(),
            options: Default::default(),
        }),
    }
}

/// Open the site's store, or `None` when the policy names none. An etcd that is
/// down now is an error here; the caller retries.
pub fn open(p: &policy::Policy) -> Result<Option<SiteStore>, BoxError> {
    let (Some(cfg), Some(ha)) = (config(p), p.ha.as_ref()) else {
        return Ok(None);
    };
    let ring = Arc::new(keyring(p, &ha.store_keys)?);
    let keys = store::Keys::new(&prefix(p), ring);
    let backend = store::open(&cfg).map_err(|e| format!("store {cfg:?}: {e}"))?;
    let writer = store::RecordWriter::spawn(
        backend.clone(),
        Some(store::RecordBook::new(keys.clone())),
        store::WriterConfig::default(),
    )?;
    let mut gateways = vec![ha.name.clone()];
    gateways.extend(ha.peers.iter().map(|p| p.name.clone()));
    Ok(Some(SiteStore {
        store: backend,
        keys,
        writer,
        gateways,
    }))
}

impl SiteStore {
    /// Hand one change to the writer (never waits on the store).
    pub fn apply(&self, change: RecordChange) {
        let ok = match change {
            RecordChange::Put(r) => self.writer.put_record(stamped(*r)),
            RecordChange::DeleteIke(spis) => self.writer.delete(self.keys.ike(spis)),
            RecordChange::DeleteChild { ike, spi_in } => {
                self.writer.delete(self.keys.child(ike, spi_in))
            }
        };
        if !ok {
            tracing::debug!("record writer queue full: a resync is due");
        }
    }
}

/// The record with its establishment time (the core reads no clock).
fn stamped(r: store::Record) -> store::Record {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match r {
        store::Record::Ike(mut i) => {
            if i.established_unix_ms == 0 {
                i.established_unix_ms = ms;
            }
            store::Record::Ike(i)
        }
        store::Record::Child(mut c) => {
            if c.established_unix_ms == 0 {
                c.established_unix_ms = ms;
            }
            store::Record::Child(c)
        }
    }
}
