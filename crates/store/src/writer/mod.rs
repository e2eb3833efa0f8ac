//! The record writer: the gateway hands it record changes and never waits. A
//! hand-over is a push on a lock-free channel and an atomic count: the caller shares
//! no lock with the writer thread, so not even a writer descheduled in the middle of
//! its bookkeeping can hold it up. The writer's own thread moves the changes into a
//! [`RecordQueue`] (newest per key wins, bounded), seals them and writes them in
//! transactions of up to [`crate::MAX_TXN_OPS`]. While the store is away the changes
//! stay queued and are retried with a growing pause (50 ms up to 1 s); the outage is
//! logged once when it starts and once when it ends, not per write.
//! [`RecordWriter::status`] reports reachable / pending / lag / latency for
//! `plexgate status` and the metrics.

pub mod histogram;
pub mod queue;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
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
    /// The most changes waiting; beyond, changes are refused and a resync is asked
    /// for (default 262,144: 100,000 SAs with room to spare).
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
    /// Changes not yet durable (keys queued, plus hand-overs not yet queued).
    pub pending: usize,
    /// Age of the oldest queued change, milliseconds.
    pub lag_ms: u64,
    /// Store outages seen (transitions to unreachable).
    pub outages: u64,
    /// The last store error.
    pub last_error: Option<String>,
    /// Whether the queue overflowed and waits for [`RecordWriter::resync`].
    pub resync_due: bool,
    /// Counters (`dropped` includes hand-overs refused at the door).
    pub counters: QueueCounters,
    /// Hand-over to durable, per change written.
    pub latency: LatencySummary,
}

enum Msg {
    Set(String, Change, Instant),
    Record(Box<Record>, Instant),
    Resync(Vec<String>, Vec<(String, Change)>, Instant),
}

struct State {
    queue: RecordQueue,
    reachable: bool,
    outages: u64,
    last_error: Option<String>,
    in_flight: bool,
}

struct Shared {
    state: Mutex<State>,
    idle: Condvar,
    /// Hand-overs sent and not yet moved into the queue.
    in_channel: AtomicUsize,
    /// Keys in the queue, as of the writer's last look.
    queued: AtomicUsize,
    /// Hand-overs refused because the writer was full.
    refused: AtomicU64,
    resync_due: AtomicBool,
    max_pending: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes record changes to a store on its own thread.
pub struct RecordWriter {
    shared: Arc<Shared>,
    tx: Option<Sender<Msg>>,
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
                queue: RecordQueue::new(cfg.max_pending, book.clone()),
                reachable: true,
                outages: 0,
                last_error: None,
                in_flight: false,
            }),
            idle: Condvar::new(),
            in_channel: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            resync_due: AtomicBool::new(false),
            max_pending: cfg.max_pending,
        });
        let (tx, rx) = channel();
        let backend = store.backend().name();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || run(&s, &rx, store.as_ref(), book.as_ref(), &cfg))?;
        Ok(RecordWriter {
            shared,
            tx: Some(tx),
            backend,
            thread: Some(thread),
        })
    }

    /// Hand a message over without waiting; false if the writer is full.
    fn send(&self, m: Msg) -> bool {
        let sh = &self.shared;
        let waiting = sh.in_channel.load(Ordering::Relaxed) + sh.queued.load(Ordering::Relaxed);
        if waiting >= sh.max_pending {
            sh.refused.fetch_add(1, Ordering::Relaxed);
            sh.resync_due.store(true, Ordering::Relaxed);
            return false;
        }
        sh.in_channel.fetch_add(1, Ordering::Relaxed);
        match self.tx.as_ref().map(|tx| tx.send(m).is_ok()) {
            Some(true) => true,
            _ => {
                sh.in_channel.fetch_sub(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// `key` should now hold `value` (already sealed) or, with `None`, be absent.
    /// Never waits. Returns false if the writer is full (counted; a resync is then
    /// due).
    pub fn set(&self, key: String, value: Option<Vec<u8>>) -> bool {
        let change = value.map_or(Change::Delete, Change::Put);
        self.send(Msg::Set(key, change, Instant::now()))
    }

    /// Write a record (its key is computed and it is sealed on the writer thread).
    /// Never waits.
    pub fn put_record(&self, record: Record) -> bool {
        self.send(Msg::Record(Box::new(record), Instant::now()))
    }

    /// Remove a record by its store key. Never waits.
    pub fn delete(&self, key: String) -> bool {
        self.set(key, None)
    }

    /// After an overflow (or to reconcile at any time): the complete live set of
    /// records under `prefixes`; everything else under them is deleted.
    pub fn resync(&self, prefixes: Vec<String>, live: Vec<(String, Change)>) {
        self.shared.resync_due.store(false, Ordering::Relaxed);
        self.shared.in_channel.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            if tx
                .send(Msg::Resync(prefixes, live, Instant::now()))
                .is_err()
            {
                self.shared.in_channel.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Reachability, pending changes, lag and counters.
    pub fn status(&self) -> WriterStatus {
        let sh = &self.shared;
        let s = sh.lock();
        let mut counters = s.queue.counters();
        counters.dropped += sh.refused.load(Ordering::Relaxed);
        WriterStatus {
            backend: self.backend,
            reachable: s.reachable,
            pending: s.queue.len() + sh.in_channel.load(Ordering::Relaxed),
            lag_ms: s.queue.lag(Instant::now()).as_millis() as u64,
            outages: s.outages,
            last_error: s.last_error.clone(),
            resync_due: s.queue.resync_due() || sh.resync_due.load(Ordering::Relaxed),
            counters,
            latency: s.queue.latency(),
        }
    }

    /// Wait until every change handed over so far is durable, at most `timeout`.
    /// Returns whether it is (tests, benchmarks, an orderly shutdown).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let sh = &self.shared;
        let deadline = Instant::now() + timeout;
        let mut s = sh.lock();
        while !s.queue.is_empty() || s.in_flight || sh.in_channel.load(Ordering::Relaxed) > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            s = sh
                .idle
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        // Closing the channel stops the thread (after the write in progress).
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Move a message into the queue.
fn absorb(sh: &Shared, s: &mut State, m: Msg) {
    match m {
        Msg::Set(k, c, t) => {
            s.queue.set(k, c, t);
        }
        Msg::Record(r, t) => {
            if let Err(e) = s.queue.set_record(*r, t) {
                tracing::error!("record writer: {e}");
            }
        }
        Msg::Resync(p, live, t) => s.queue.resync(p, live, t),
    }
    sh.in_channel.fetch_sub(1, Ordering::Relaxed);
}

/// Wait up to `timeout` for hand-overs (none if zero), move them all into the
/// queue. Returns false once the writer is dropped.
fn gather(sh: &Shared, rx: &Receiver<Msg>, timeout: Duration) -> bool {
    let first = if timeout.is_zero() {
        rx.try_recv()
            .map_err(|e| matches!(e, std::sync::mpsc::TryRecvError::Disconnected))
    } else {
        rx.recv_timeout(timeout)
            .map_err(|e| e == RecvTimeoutError::Disconnected)
    };
    let mut s = sh.lock();
    let open = match first {
        Ok(m) => {
            absorb(sh, &mut s, m);
            true
        }
        Err(disconnected) => !disconnected,
    };
    for m in rx.try_iter() {
        absorb(sh, &mut s, m);
    }
    sh.queued.store(s.queue.len(), Ordering::Relaxed);
    if s.queue.is_empty() && !s.in_flight {
        sh.idle.notify_all();
    }
    open
}

/// The writer thread.
fn run(
    sh: &Shared,
    rx: &Receiver<Msg>,
    store: &dyn Store,
    book: Option<&RecordBook>,
    cfg: &WriterConfig,
) {
    let mut pause = cfg.retry_min;
    let mut failing = false;
    loop {
        if failing {
            // Wait out the pause, taking hand-overs meanwhile.
            let until = Instant::now() + pause;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if !gather(sh, rx, left.max(Duration::from_micros(1))) {
                    return;
                }
            }
        }
        let empty = sh.lock().queue.is_empty();
        let wait = if empty {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        if !gather(sh, rx, wait) {
            return;
        }
        let batch = {
            let mut s = sh.lock();
            if s.queue.is_empty() {
                continue;
            }
            s.in_flight = true;
            s.queue.take_batch(cfg.batch)
        };
        let result = if batch.is_empty() {
            sweep(sh, store)
        } else {
            write(sh, store, batch, book)
        };
        let mut s = sh.lock();
        s.in_flight = false;
        sh.queued.store(s.queue.len(), Ordering::Relaxed);
        match result {
            Ok(()) => {
                if !s.reachable {
                    tracing::info!(
                        "record store reachable again; {} change(s) still pending",
                        s.queue.len()
                    );
                }
                s.reachable = true;
                failing = false;
                pause = cfg.retry_min;
            }
            Err(e) => {
                if s.reachable {
                    s.outages += 1;
                    tracing::warn!(
                        "record store unreachable ({e}); changes are kept ({} pending) and retried",
                        s.queue.len()
                    );
                } else {
                    pause = (pause * 2).min(cfg.retry_max);
                }
                s.reachable = false;
                s.last_error = Some(e.to_string());
                failing = true;
            }
        }
        if s.queue.is_empty() {
            sh.idle.notify_all();
        }
    }
}

/// Seal and write one batch without holding the lock, then account for it.
fn write(
    sh: &Shared,
    store: &dyn Store,
    batch: queue::Batch,
    book: Option<&RecordBook>,
) -> Result<(), crate::StoreError> {
    let written = queue::write_batch(store, batch, book);
    let mut s = sh.lock();
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
fn sweep(sh: &Shared, store: &dyn Store) -> Result<(), crate::StoreError> {
    let prefixes = sh.lock().queue.sweep_prefixes();
    if let Some(prefixes) = prefixes {
        let listed = queue::list_keys(store, &prefixes)?;
        sh.lock().queue.finish_sweep(listed, Instant::now());
    }
    Ok(())
}
