//! Seed 002: which of this gateway's interfaces share a network. When an interface
//! comes up it announces its own address; a frame sent from one interface's MAC
//! that arrives on another interface proves that both are on one network, and they
//! become each other's backup. When an interface comes back and its announcement
//! does not reach an interface it was paired with (that is up) within the
//! discovery timeout, the pair is dropped: the cabling changed.
//!
//! Pairs are kept while an interface is down: that is when its backup is needed.
//! The network of an interface is everything connected to it through pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::duty::Link;

/// An interface's pending announcement: where it has been seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    deadline: Instant,
    seen_on: BTreeSet<usize>,
}

/// Pairs of interfaces (by index) known to share a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Networks {
    pairs: BTreeSet<(usize, usize)>,
    probes: BTreeMap<usize, Probe>,
}

fn ordered(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Networks {
    /// A frame from interface `from` arrived on interface `on`. Returns true when
    /// this pair is new.
    pub(crate) fn seen(&mut self, from: usize, on: usize) -> bool {
        // Either direction proves the link for a pending probe of either end.
        if let Some(p) = self.probes.get_mut(&from) {
            p.seen_on.insert(on);
        }
        if let Some(p) = self.probes.get_mut(&on) {
            p.seen_on.insert(from);
        }
        from != on && self.pairs.insert(ordered(from, on))
    }

    /// Interface `i` just announced itself; judge its pairs at `deadline`.
    pub(crate) fn start_probe(&mut self, i: usize, deadline: Instant) {
        self.probes.insert(
            i,
            Probe {
                deadline,
                seen_on: BTreeSet::new(),
            },
        );
    }

    /// The earliest probe deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.deadline).min()
    }

    /// Ends the probes due at `now`: drops each pair whose other interface was up
    /// (the whole time it matters: now) and did not see the announcement. Returns
    /// the dropped pairs.
    pub(crate) fn expire(&mut self, now: Instant, links: &[Link]) -> Vec<(usize, usize)> {
        let due: Vec<usize> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        let mut dropped = Vec::new();
        for i in due {
            let Some(p) = self.probes.remove(&i) else {
                continue;
            };
            if links.get(i).and_then(Link::usable).is_none() {
                continue; // went down again before the verdict: judge nothing
            }
            let stale: Vec<(usize, usize)> = self
                .pairs
                .iter()
                .filter(|(a, b)| *a == i || *b == i)
                .filter(|(a, b)| {
                    let other = if *a == i { *b } else { *a };
                    let up = links.get(other).and_then(Link::usable).is_some();
                    up && !p.seen_on.contains(&other)
                })
                .copied()
                .collect();
            for pair in stale {
                self.pairs.remove(&pair);
                dropped.push(pair);
            }
        }
        dropped
    }

    /// Every other interface on the network of `i`, in index order.
    pub(crate) fn peers(&self, i: usize) -> Vec<usize> {
        let mut seen = BTreeSet::from([i]);
        let mut todo = vec![i];
        while let Some(x) = todo.pop() {
            for (a, b) in &self.pairs {
                let other = match (*a == x, *b == x) {
                    (true, _) => *b,
                    (_, true) => *a,
                    _ => continue,
                };
                if seen.insert(other) {
                    todo.push(other);
                }
            }
        }
        seen.remove(&i);
        seen.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexgate_wire::arp::EthernetAddress;
    use std::time::Duration;

    fn up() -> Link {
        Link {
            up: true,
            mac: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
        }
    }

    #[test]
    fn pairs_form_networks_and_expire() {
        let t0 = Instant::now();
        let mut n = Networks::default();
        assert!(n.seen(0, 1));
        assert!(!n.seen(1, 0), "same pair");
        assert!(!n.seen(2, 2), "own interface");
        assert!(n.seen(1, 2));
        assert_eq!(n.peers(0), vec![1, 2]);
        assert_eq!(n.peers(3), Vec::<usize>::new());
        // 0 announces again; seen on 1 only while 2 is up: (0,1) stays, nothing
        // else involves 0.
        n.start_probe(0, t0 + Duration::from_secs(1));
        n.seen(0, 1);
        let links = [up(), up(), up()];
        assert!(n.expire(t0, &links).is_empty(), "not due yet");
        assert!(n.expire(t0 + Duration::from_secs(1), &links).is_empty());
        // 2 announces and is not seen on 1: the pair (1,2) is dropped.
        n.start_probe(2, t0 + Duration::from_secs(2));
        assert_eq!(n.expire(t0 + Duration::from_secs(2), &links), vec![(1, 2)]);
        assert_eq!(n.peers(2), Vec::<usize>::new());
        assert_eq!(n.next_deadline(), None);
    }

    #[test]
    fn down_peer_is_not_judged() {
        let t0 = Instant::now();
        let mut n = Networks::default();
        n.seen(0, 1);
        n.start_probe(0, t0);
        let links = [up(), Link::default()];
        assert!(n.expire(t0, &links).is_empty());
        assert_eq!(n.peers(1), vec![0]);
    }
}
