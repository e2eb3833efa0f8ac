//! The etcd backend (etcd v3 through `etcd-client`). The gateway's threads are plain
//! std threads: this store owns a small tokio runtime (one worker thread) and each
//! operation blocks on it with a deadline ([`EtcdOptions::op_timeout`]), so a dead
//! etcd costs a caller at most that long and comes back as
//! [`StoreError::Unavailable`]. Transactions map onto etcd's (`Compare` on
//! `mod_revision`, or `create_revision == 0` for absent); leases are etcd leases,
//! kept alive over one stream per lease; watches are etcd watches that reconnect and
//! resume from their next revision (`watch.rs`). Lists are paged (1,000 keys a page,
//! all pages at the first page's revision), so 100,000 records fit etcd's message
//! limits.

mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp,
};
use tokio::runtime::Runtime;

use crate::error::StoreError;
use crate::kv::{
    check_key, check_txn, prefix_end, Backend, Compare, Entry, Expect, LeaseId, Op, Revision,
    Store, TxnOutcome, Watch,
};

/// Keys per page when listing.
const PAGE: i64 = 1000;

/// Settings of an [`EtcdStore`].
#[derive(Debug, Clone, Copy)]
pub struct EtcdOptions {
    /// Deadline of every operation (default 2 s).
    pub op_timeout: Duration,
    /// Deadline to open a connection (default 1 s).
    pub connect_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// A connection to an etcd cluster.
pub struct EtcdStore {
    rt: Runtime,
    client: Client,
    opts: EtcdOptions,
    keepers: Mutex<HashMap<i64, Keeper>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// Map etcd-client's errors onto the store's.
pub(crate) fn err(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        // gRPC status codes: 3 INVALID_ARGUMENT, 9 FAILED_PRECONDITION, 11 OUT_OF_RANGE
        // are requests etcd will never accept; 7 PERMISSION_DENIED, 8
        // RESOURCE_EXHAUSTED, 16 UNAUTHENTICATED are refusals; the rest (UNAVAILABLE,
        // DEADLINE_EXCEEDED, CANCELLED, ABORTED, UNKNOWN, …) mean "not now".
        E::GRpcStatus(s) => match i32::from(s.code()) {
            3 | 9 | 11 => StoreError::Corrupt(format!("etcd refused the request: {}", s.message())),
            7 | 8 | 16 => StoreError::Refused(format!("etcd: {}", s.message())),
            _ => StoreError::Unavailable(format!("etcd: {}", s.message())),
        },
        other => StoreError::Unavailable(format!("etcd: {other}")),
    }
}

/// etcd's answer for a lease that does not exist (any more).
fn lease_error(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

impl EtcdStore {
    /// Connect to `endpoints` (`http://host:port`). Connecting is lazy: an etcd that
    /// is down now makes operations fail until it is up, not this call.
    pub fn connect(endpoints: &[String], opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-etcd")
            .enable_all()
            .build()?;
        let co = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_timeout(opts.op_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = rt
            .block_on(async {
                tokio::time::timeout(opts.op_timeout, Client::connect(endpoints, Some(co))).await
            })
            .map_err(|_| StoreError::Unavailable("etcd: connect timed out".into()))?
            .map_err(err)?;
        Ok(EtcdStore {
            rt,
            client,
            opts,
            keepers: Mutex::new(HashMap::new()),
        })
    }

    /// Run `f` on the runtime with the operation deadline.
    fn run<T>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.rt
            .block_on(async { tokio::time::timeout(self.opts.op_timeout, f).await })
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "etcd: no answer within {:?}",
                    self.opts.op_timeout
                ))
            })?
            .map_err(err)
    }

    fn keepers(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Keeper>> {
        self.keepers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_entry(kv: &etcd_client::KeyValue) -> Result<Entry, StoreError> {
    Ok(Entry {
        key: kv
            .key_str()
            .map_err(|_| StoreError::Corrupt("a key is not UTF-8".into()))?
            .to_string(),
        value: kv.value().to_vec(),
        revision: kv.mod_revision() as Revision,
        created: kv.create_revision() as Revision,
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision()) as Revision
}

impl Store for EtcdStore {
    fn backend(&self) -> Backend {
        Backend::Etcd
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        let mut kv = self.client.kv_client();
        let r = self.run(kv.get(key, None))?;
        r.kvs().first().map(to_entry).transpose()
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let mut kv = self.client.kv_client();
        let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let mut from = prefix.as_bytes().to_vec();
        if from.is_empty() {
            from.push(0);
        }
        let mut at = 0i64;
        let mut out = Vec::new();
        loop {
            let mut o = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if at > 0 {
                o = o.with_revision(at);
            }
            let r = self.run(kv.get(from.clone(), Some(o)))?;
            if at == 0 {
                at = header_rev(r.header()) as i64;
            }
            for e in r.kvs() {
                out.push(to_entry(e)?);
            }
            match (r.more(), r.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    fn txn(&self, when: &[Compare], ops: &[Op]) -> Result<TxnOutcome, StoreError> {
        check_txn(when, ops)?;
        let cmps: Vec<EtcdCompare> = when
            .iter()
            .map(|c| match c.expect {
                Expect::Absent => EtcdCompare::create_revision(c.key.as_str(), CompareOp::Equal, 0),
                Expect::At(r) => {
                    EtcdCompare::mod_revision(c.key.as_str(), CompareOp::Equal, r as i64)
                }
            })
            .collect();
        let tops: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(
                    key.as_str(),
                    value.clone(),
                    lease.map(|l| PutOptions::new().with_lease(l.0)),
                ),
                Op::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect();
        let mut kv = self.client.kv_client();
        let lease = ops.iter().find_map(|o| match o {
            Op::Put { lease: Some(l), .. } => Some(*l),
            _ => None,
        });
        let r = self
            .rt
            .block_on(async {
                tokio::time::timeout(
                    self.opts.op_timeout,
                    kv.txn(Txn::new().when(cmps).and_then(tops)),
                )
                .await
            })
            .map_err(|_| StoreError::Unavailable("etcd: transaction timed out".into()))?;
        let r = match r {
            Ok(r) => r,
            Err(e) if lease_error(&e) => {
                return Err(StoreError::LeaseExpired(lease.unwrap_or(LeaseId(0))))
            }
            Err(e) => return Err(err(e)),
        };
        if r.succeeded() {
            Ok(TxnOutcome::Committed(header_rev(r.header())))
        } else {
            Ok(TxnOutcome::Conflict)
        }
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let mut kv = self.client.kv_client();
        let r = self.run(kv.get("\0", Some(GetOptions::new().with_count_only())))?;
        Ok(header_rev(r.header()))
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let mut lc = self.client.lease_client();
        let r = self.run(lc.grant(secs, None))?;
        Ok(LeaseId(r.id()))
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let existing = self.keepers().remove(&lease.0);
        let mut lc = self.client.lease_client();
        let result = self.rt.block_on(async {
            tokio::time::timeout(self.opts.op_timeout, async {
                let (mut keeper, mut stream) = match existing {
                    Some(k) => k,
                    None => lc.keep_alive(lease.0).await?,
                };
                keeper.keep_alive().await?;
                let msg = stream.message().await?;
                Ok::<_, etcd_client::Error>((keeper, stream, msg.map(|m| m.ttl())))
            })
            .await
        });
        match result {
            Err(_) => Err(StoreError::Unavailable("etcd: keep-alive timed out".into())),
            Ok(Err(e)) if lease_error(&e) => Err(StoreError::LeaseExpired(lease)),
            Ok(Err(e)) => Err(err(e)),
            Ok(Ok((_, _, None))) => Err(StoreError::Unavailable(
                "etcd: keep-alive stream ended".into(),
            )),
            Ok(Ok((_, _, Some(ttl)))) if ttl <= 0 => Err(StoreError::LeaseExpired(lease)),
            Ok(Ok((keeper, stream, Some(_)))) => {
                self.keepers().insert(lease.0, (keeper, stream));
                Ok(())
            }
        }
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.keepers().remove(&lease.0);
        let mut lc = self.client.lease_client();
        let r = self.rt.block_on(async {
            tokio::time::timeout(self.opts.op_timeout, lc.revoke(lease.0)).await
        });
        match r {
            Err(_) => Err(StoreError::Unavailable("etcd: revoke timed out".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if lease_error(&e) => Err(StoreError::LeaseExpired(lease)),
            Ok(Err(e)) => Err(err(e)),
        }
    }

    fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watch, StoreError> {
        let start = match from {
            Some(r) => r.max(1),
            None => self.revision()? + 1,
        };
        Ok(watch::spawn(&self.rt, self.client.clone(), prefix, start))
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.keepers().clear();
    }
}
