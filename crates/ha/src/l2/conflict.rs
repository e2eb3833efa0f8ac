//! Another host claiming an address this gateway answers for (an ARP request or
//! reply whose sender IP is the address, with a MAC that is not ours). The frame is
//! ignored and counted; the conflict is logged at most once per address per
//! `conflict_log_interval` (with the number of frames not logged), and the address
//! is defended with one announcement at most once per `defend_interval`.
//!
//! State is kept only for owned addresses, so a flood of spoofed frames for random
//! addresses costs nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
struct State {
    last_logged: Option<Instant>,
    suppressed: u64,
    last_defended: Option<Instant>,
}

/// What to do about one conflicting frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Log it now, with this many frames not logged before it.
    pub(crate) log: Option<u64>,
    /// Send one announcement.
    pub(crate) defend: bool,
}

/// Conflict state per owned address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conflicts {
    by_addr: BTreeMap<Ipv4Addr, State>,
}

fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

impl Conflicts {
    /// Records a conflicting frame for `addr`.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        addr: Ipv4Addr,
        log_every: Duration,
        defend_every: Duration,
    ) -> Verdict {
        let s = self.by_addr.entry(addr).or_default();
        let log = if due(s.last_logged, now, log_every) {
            s.last_logged = Some(now);
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        };
        //= https://www.rfc-editor.org/rfc/rfc5227#section-2.4
        //# (b) If a host currently has active TCP connections or other reasons
        //# to prefer to keep the same IPv4 address, and it has not seen any
        //# other conflicting ARP packets within the last DEFEND_INTERVAL
        //# seconds, then it MAY elect to attempt to defend its address by
        //# recording the time that the conflicting ARP packet was received, and
        //# then broadcasting one single ARP Announcement, giving its own IP and
        //# hardware addresses.
        let defend = due(s.last_defended, now, defend_every);
        if defend {
            s.last_defended = Some(now);
        }
        Verdict { log, defend }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_defends_rarely() {
        let t0 = Instant::now();
        let a: Ipv4Addr = "10.0.0.100".parse().unwrap();
        let mut c = Conflicts::default();
        let (log, def) = (Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(
            c.record(t0, a, log, def),
            Verdict {
                log: Some(0),
                defend: true
            }
        );
        for i in 1..1000u64 {
            let v = c.record(t0 + Duration::from_millis(i), a, log, def);
            assert_eq!(v.log, None);
            assert!(!v.defend);
        }
        let v = c.record(t0 + Duration::from_secs(10), a, log, def);
        assert_eq!((v.log, v.defend), (None, true));
        let v = c.record(t0 + Duration::from_secs(60), a, log, def);
        assert_eq!(v.log, Some(1000), "999 + the one at 10 s were not logged");
        // Another address has its own state.
        let b: Ipv4Addr = "10.0.0.101".parse().unwrap();
        assert_eq!(
            c.record(t0 + Duration::from_secs(61), b, log, def).log,
            Some(0)
        );
    }
}
