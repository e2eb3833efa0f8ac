//! An etcd prefix watch as a std channel: a task on the store's runtime reads the
//! etcd watch stream and forwards events; when the stream breaks (etcd restarted,
//! connection lost) it reconnects and resumes from the first revision it has not
//! delivered, so no event is lost or repeated; if etcd has compacted that revision
//! away it sends [`WatchEvent::Resync`] and resumes from now. It stops when the
//! [`Watch`] is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use tokio::runtime::Runtime;

use super::to_entry;
use crate::kv::{Revision, Watch, WatchEvent};

/// Pause before reconnecting a broken watch.
const RETRY: Duration = Duration::from_millis(100);
/// How often an idle watch checks whether its receiver is gone.
const CHECK: Duration = Duration::from_millis(200);

/// Start a watch of `prefix` from revision `start`.
pub(super) fn spawn(rt: &Runtime, client: Client, prefix: &str, start: Revision) -> Watch {
    let (tx, rx) = channel();
    let alive = Arc::new(AtomicBool::new(true));
    rt.spawn(run(client, prefix.to_string(), start, tx, alive.clone()));
    Watch::new(rx, alive)
}

/// Forward one response's events; returns false if the receiver is gone. etcd
/// never splits one revision's events over two responses (no fragmenting is asked
/// for), so everything below `next` was delivered before a reconnect.
fn forward(
    resp: &etcd_client::WatchResponse,
    next: &mut Revision,
    tx: &Sender<WatchEvent>,
) -> bool {
    let mut last = None;
    for ev in resp.events() {
        let Some(kv) = ev.kv() else { continue };
        let rev = kv.mod_revision() as Revision;
        if rev < *next {
            continue;
        }
        let out = match ev.event_type() {
            EventType::Put => match to_entry(kv) {
                Ok(e) => WatchEvent::Put(e),
                Err(_) => continue,
            },
            EventType::Delete => WatchEvent::Delete {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                revision: rev,
            },
        };
        if tx.send(out).is_err() {
            return false;
        }
        last = Some(rev);
    }
    if let Some(rev) = last {
        *next = rev + 1;
    }
    true
}

async fn run(
    client: Client,
    prefix: String,
    mut next: Revision,
    tx: Sender<WatchEvent>,
    alive: Arc<AtomicBool>,
) {
    while alive.load(Ordering::Relaxed) {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next as i64)
            .with_progress_notify();
        let mut stream = match client
            .watch_client()
            .watch(prefix.as_str(), Some(opts))
            .await
        {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) | Err(_) => break,
                    };
                    if resp.compact_revision() > 0 {
                        let now = resp.header().map_or(0, |h| h.revision()) as Revision;
                        next = now.max(next) + 1;
                        if tx.send(WatchEvent::Resync { revision: now }).is_err() {
                            return;
                        }
                        break;
                    }
                    if resp.canceled() {
                        break;
                    }
                    if !forward(&resp, &mut next, &tx) {
                        return;
                    }
                }
                _ = tokio::time::sleep(CHECK) => {
                    if !alive.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
