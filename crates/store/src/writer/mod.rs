//! The record writer: the gateway hands it record changes and never waits. Changes go
//! into a [`RecordQueue`] (newest per key wins, bounded) under a short lock; the
//! writer's own thread seals and writes them in transactions of up to
//! [`crate::MAX_TXN_OPS`]. While the store is away the changes stay queued and are
//! retried with a growing pause (50 ms up to 1 s); the outage is logged once when it
//! starts and once when it ends, not per write. [`RecordWriter::status`] reports
//! reachable / pending / lag / latency for `plexgate status` and the metrics.

pub mod histogram;
pub mod queue;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::kv::{Store, MAX_TXN_OPS};
use crate::records::{Record, RecordBook};
pub use histogram::LatencySummary;
pub use queue::{Change, QueueCounters, RecordQueue};

/// Settings of a [`RecordWriter`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The most keys with a change pending; beyond, changes are refused and a
    /// resync is asked for (default 262,144: 100,000 SAs with room to spare).
    pub max_pending: usize,
    /// Changes per transaction (at most [`MAX_TXN_OPS`]).
    pub batch: usize,
    /// First pause after a failure.
    pub retry_min: Duration,
    /// Longest pause between retries.
    pub retry_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_pending: 1 << 18,
            batch: MAX_TXN_OPS,
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
        }
    }
}

/// What the writer reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WriterStatus {
    /// The backend (`memory`, `embedded`, `etcd`).
    pub backend: &'static str,
    /// Whether the last write attempt succeeded.
    pub reachable: bool,
    /// Keys with a change not yet durable.
    pub pending: usize,
    /// Age of the oldest pending change, milliseconds.
    pub lag_ms: u64,
    /// Store outages seen (transitions to unreachable).
    pub outages: u64,
    /// The last store error.
    pub last_error: Option<String>,
    /// Whether the queue overflowed and waits for [`RecordWriter::resync`].
    pub resync_due: bool,
    /// Counters.
    pub counters: QueueCounters,
    /// Hand-over to durable, per change written.
    pub latency: LatencySummary,
}

struct State {
    queue: RecordQueue,
    reachable: bool,
    outages: u64,
    last_error: Option<String>,
    in_flight: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    idle: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes record changes to a store on its own thread.
pub struct RecordWriter {
    shared: Arc<Shared>,
    backend: &'static str,
    thread: Option<JoinHandle<()>>,
}

impl RecordWriter {
    /// Start the writer thread on `store`; `book` seals the records handed to
    /// [`RecordWriter::put_record`].
    pub fn spawn(
        store: Arc<dyn Store>,
        book: Option<RecordBook>,
        cfg: WriterConfig,
    ) -> std::io::Result<RecordWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: RecordQueue::new(cfg.max_pending, book),
                reachable: true,
                outages: 0,
                last_error: None,
                in_flight: false,
                stop: false,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
        });
        let backend = store.backend().name();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || run(&s, store.as_ref(), &cfg))?;
        Ok(RecordWriter {
            shared,
            backend,
            thread: Some(thread),
        })
    }

    /// `key` should now hold `value` (already sealed) or, with `None`, be absent.
    /// Never blocks on the store. Returns false if the queue was full (counted; a
    /// resync is then due).
    pub fn set(&self, key: String, value: Option<Vec<u8>>) -> bool {
        let change = value.map_or(Change::Delete, Change::Put);
        let ok = self.shared.lock().queue.set(key, change, Instant::now());
        self.shared.wake.notify_one();
        ok
    }

    /// Write a record (sealed on the writer thread). Never blocks on the store.
    pub fn put_record(&self, record: Record) -> bool {
        let r = self.shared.lock().queue.set_record(record, Instant::now());
        self.shared.wake.notify_one();
        match r {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!("record writer: {e}");
                false
            }
        }
    }

    /// Remove a record by its store key.
    pub fn delete(&self, key: String) -> bool {
        self.set(key, None)
    }

    /// After an overflow (or to reconcile at any time): the complete live set of
    /// records under `prefixes`; everything else under them is deleted.
    pub fn resync(&self, prefixes: Vec<String>, live: Vec<(String, Change)>) {
        self.shared
            .lock()
            .queue
            .resync(prefixes, live, Instant::now());
        self.shared.wake.notify_one();
    }

    /// Reachability, pending changes, lag and counters.
    pub fn status(&self) -> WriterStatus {
        let s = self.shared.lock();
        WriterStatus {
            backend: self.backend,
            reachable: s.reachable,
            pending: s.queue.len(),
            lag_ms: s.queue.lag(Instant::now()).as_millis() as u64,
            outages: s.outages,
            last_error: s.last_error.clone(),
            resync_due: s.queue.resync_due(),
            counters: s.queue.counters(),
            latency: s.queue.latency(),
        }
    }

    /// Wait until every change handed over so far is durable, at most `timeout`.
    /// Returns whether it is (tests, benchmarks, an orderly shutdown).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        while !s.queue.is_empty() || s.in_flight {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .shared
                .idle
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread.
fn run(shared: &Shared, store: &dyn Store, cfg: &WriterConfig) {
    let mut pause = cfg.retry_min;
    loop {
        let batch = {
            let mut s = shared.lock();
            while s.queue.is_empty() && !s.stop {
                shared.idle.notify_all();
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.in_flight = true;
            s.queue.take_batch(cfg.batch)
        };
        let result = match batch {
            Ok(b) if b.is_empty() => sweep(shared, store),
            Ok(b) => write(shared, store, b),
            Err(e) => Err(crate::StoreError::Refused(format!("sealing failed: {e}"))),
        };
        let mut s = shared.lock();
        s.in_flight = false;
        match result {
            Ok(()) => {
                if !s.reachable {
                    tracing::info!(
                        "record store reachable again; {} change(s) still pending",
                        s.queue.len()
                    );
                }
                s.reachable = true;
                pause = cfg.retry_min;
            }
            Err(e) => {
                if s.reachable {
                    s.outages += 1;
                    tracing::warn!(
                        "record store unreachable ({e}); changes are kept ({} pending) and retried",
                        s.queue.len()
                    );
                }
                s.reachable = false;
                s.last_error = Some(e.to_string());
                if !s.stop {
                    s = shared
                        .wake
                        .wait_timeout(s, pause)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                pause = (pause * 2).min(cfg.retry_max);
            }
        }
        if s.queue.is_empty() {
            shared.idle.notify_all();
        }
    }
}

/// Write one batch without holding the lock (the gateway keeps queueing meanwhile),
/// then account for it under the lock.
fn write(shared: &Shared, store: &dyn Store, batch: queue::Batch) -> Result<(), crate::StoreError> {
    let written = queue::write_batch(store, batch);
    let mut s = shared.lock();
    let now = Instant::now();
    match written {
        queue::Written::All(b) => {
            s.queue.ack(&b, now);
            Ok(())
        }
        queue::Written::Each(results) => {
            let mut transient = None;
            for (b, r) in results {
                match r {
                    Ok(()) => s.queue.ack(&b, now),
                    Err(e) if e.is_transient() => transient = Some(e),
                    Err(_) => s.queue.give_up(&b),
                }
            }
            transient.map_or(Ok(()), Err)
        }
        queue::Written::Failed(_, e) => Err(e),
    }
}

/// After a resync: list the prefixes without the lock, then queue the deletes.
fn sweep(shared: &Shared, store: &dyn Store) -> Result<(), crate::StoreError> {
    let prefixes = shared.lock().queue.sweep_prefixes();
    if let Some(prefixes) = prefixes {
        let listed = queue::list_keys(store, &prefixes)?;
        shared.lock().queue.finish_sweep(listed, Instant::now());
    }
    Ok(())
}
